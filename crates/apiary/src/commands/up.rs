//! `apiary up`: everything in one process on the embedded store, for a first
//! run. Creates an operator account the first time and writes its keys to
//! the data directory (mode 0600), printing them once.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use apiary_store::{Credentials, NewAccount, Role, Store};

use crate::cli::UpArgs;
use crate::config::Settings;

pub const CREDENTIALS_FILE: &str = "credentials.json";

pub fn run(args: UpArgs, mut settings: Settings) -> anyhow::Result<ExitCode> {
    if let Some(listen) = args.listen {
        settings.listen = listen;
    }
    let store = super::open_store(&settings)?;
    if store.list_accounts()?.is_empty() {
        let (_, creds) = store.create_account(&NewAccount {
            name: "local operator".into(),
            monthly_quota: None,
            role: Role::AllSensors,
        })?;
        let path = settings.data_dir.join(CREDENTIALS_FILE);
        write_private(&path, &creds)?;
        println!("First run: created an operator account. Its keys are shown only now,");
        println!("and kept in {} (readable by you alone).", path.display());
        println!("  API id:                  {}", creds.api_id);
        println!("  threat-information key:  {}", creds.threat_key);
        println!("  sensor key:              {}", creds.sensor_key);
        println!(
            "Try: curl -H 'X-HoneyDb-ApiId: {}' -H 'X-HoneyDb-ApiKey: {}' http://{}/api/bad-hosts",
            creds.api_id, creds.threat_key, settings.listen
        );
    }
    drop(store);
    super::serve::run(crate::cli::ServeArgs { listen: None, retention_days: None }, settings)
}

fn write_private(path: &Path, creds: &Credentials) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(serde_json::to_string_pretty(creds)?.as_bytes())?;
    Ok(())
}
