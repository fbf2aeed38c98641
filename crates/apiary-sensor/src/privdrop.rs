//! Dropping root after binding, so low ports can be used without running the
//! emulations (which parse hostile input) with privileges.

use std::path::Path;

use anyhow::Context;
use nix::unistd::{self, Gid, Group, Uid, User};

/// Becomes `user` (and `group`, or the user's primary group). The state
/// directory is handed to that user first so the queue can keep growing.
pub fn drop_to(user: &str, group: Option<&str>, state_dir: &Path) -> anyhow::Result<()> {
    let u = User::from_name(user)?.with_context(|| format!("no such user {user:?}"))?;
    let gid: Gid = match group {
        Some(g) => Group::from_name(g)?.with_context(|| format!("no such group {g:?}"))?.gid,
        None => u.gid,
    };
    if !Uid::effective().is_root() {
        anyhow::ensure!(
            Uid::effective() == u.uid,
            "running as uid {} and not root: cannot become {user}",
            Uid::effective()
        );
        return Ok(());
    }
    chown_tree(state_dir, u.uid, gid)?;
    unistd::setgroups(&[gid]).context("setgroups")?;
    unistd::setgid(gid).context("setgid")?;
    unistd::setuid(u.uid).context("setuid")?;
    anyhow::ensure!(unistd::setuid(Uid::from_raw(0)).is_err(), "privileges could not be dropped");
    tracing::info!(user, gid = gid.as_raw(), "dropped root privileges");
    Ok(())
}

fn chown_tree(path: &Path, uid: Uid, gid: Gid) -> anyhow::Result<()> {
    unistd::chown(path, Some(uid), Some(gid)).with_context(|| format!("chown {}", path.display()))?;
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if entry.file_type()?.is_symlink() {
                continue;
            }
            chown_tree(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}
