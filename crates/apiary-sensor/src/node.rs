//! The sensor's node id: 32 lowercase hex digits, made once and kept in the
//! state directory, so every event this sensor ever sends names the same node
//! (and retried events keep their idempotency key).

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::Context;

const FILE: &str = "node_id";

pub fn load_or_create(state_dir: &Path) -> anyhow::Result<String> {
    let path = state_dir.join(FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim().to_ascii_lowercase();
            anyhow::ensure!(
                id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
                "{} does not hold a 32-hex node id; fix or delete it",
                path.display()
            );
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4().simple().to_string();
            let tmp = state_dir.join("node_id.tmp");
            let mut f = fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
            writeln!(f, "{id}")?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes a secret (a host key, a TLS key) atomically with mode 0600, so a
/// crash never leaves half a key and other local users cannot read it.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn stable_across_calls() {
        let dir = tempfile::tempdir().unwrap();
        let a = super::load_or_create(dir.path()).unwrap();
        assert_eq!(a.len(), 32);
        assert_eq!(a, super::load_or_create(dir.path()).unwrap());
        std::fs::write(dir.path().join("node_id"), "nope").unwrap();
        assert!(super::load_or_create(dir.path()).is_err());
    }
}
