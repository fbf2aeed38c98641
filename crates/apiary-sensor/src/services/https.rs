//! HTTPS: the HTTP service (same lures, same facts) behind TLS.
//!
//! The certificate is self-signed, made at first start for `hostname` and
//! kept in `<state_dir>/https_cert.pem` and `https_key.pem` (mode 0600), so
//! the sensor shows the same certificate across restarts as a real server
//! would (scanners index certificates; a new one per start is a tell).
//! rustls runs on the `ring` provider, chosen explicitly so the build needs
//! no C toolchain beyond ring's and the choice does not depend on which
//! features other crates enable.
//!
//! The TLS handshake is not recorded byte for byte; a `tls` INFO fact keeps
//! the SNI name (or the handshake error, for clients that speak plain HTTP or
//! garbage to the port). RX/TX then carry the decrypted HTTP.
//! Options: everything HTTP takes, plus `hostname` (certificate name).

use std::io;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

use super::http;
use crate::config::ServiceConfig;
use crate::conn::Conn;
use crate::facts::Fact;

const CERT_FILE: &str = "https_cert.pem";
const KEY_FILE: &str = "https_key.pem";

/// Loads (or on first start makes) the certificate and builds the acceptor.
pub fn acceptor(cfg: &ServiceConfig, state_dir: &Path) -> anyhow::Result<TlsAcceptor> {
    let (cert_path, key_path) = (state_dir.join(CERT_FILE), state_dir.join(KEY_FILE));
    if !cert_path.exists() || !key_path.exists() {
        let host = cfg.hostname().to_owned();
        let made = rcgen::generate_simple_self_signed(vec![host.clone(), "localhost".into()])
            .context("cannot make the HTTPS certificate")?;
        crate::node::write_private(&key_path, made.signing_key.serialize_pem().as_bytes())
            .with_context(|| format!("cannot write {}", key_path.display()))?;
        crate::node::write_private(&cert_path, made.cert.pem().as_bytes())
            .with_context(|| format!("cannot write {}", cert_path.display()))?;
    }
    let certs = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read certificate {}", cert_path.display()))?;
    let key =
        PrivateKeyDer::from_pem_file(&key_path).with_context(|| format!("cannot read key {}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!("{} and {} do not make a usable certificate", cert_path.display(), key_path.display())
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

pub async fn handle(conn: &mut Conn, cfg: &ServiceConfig, tls: &TlsAcceptor) -> io::Result<()> {
    match conn.start_tls(tls).await {
        Ok(sni) => {
            let mut fact = Fact::new("tls");
            if let Some(sni) = sni {
                fact = fact.with("sni", sni);
            }
            conn.info(fact).await;
        }
        Err(e) => {
            if conn.limit.is_none() {
                conn.info(Fact::new("tls").with("error", e.to_string())).await;
            }
            return Err(e);
        }
    }
    http::handle(conn, cfg, http::Flavor::Web).await
}
