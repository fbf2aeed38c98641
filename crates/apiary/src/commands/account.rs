//! `apiary account ...`: accounts and keys, straight on the store.

use std::process::ExitCode;

use anyhow::{bail, Context};
use apiary_store::{KeyKind, NewAccount, Role, Store};

use crate::cli::{AccountCommand, KeyArg, RoleArg};
use crate::config::Settings;

fn parse_quota(s: &str) -> anyhow::Result<Option<u64>> {
    if s.eq_ignore_ascii_case("unlimited") {
        return Ok(None);
    }
    s.parse().map(Some).with_context(|| format!("--quota {s:?}: expected a number of requests or `unlimited`"))
}

pub fn run(cmd: AccountCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    let store = super::open_store(settings)?;
    match cmd {
        AccountCommand::Create { name, quota, role, json } => {
            if name.trim().is_empty() {
                bail!("--name must not be empty");
            }
            let role = match role {
                RoleArg::Community => Role::Community,
                RoleArg::AllSensors => Role::AllSensors,
            };
            let (account, creds) =
                store.create_account(&NewAccount { name, monthly_quota: parse_quota(&quota)?, role })?;
            if json {
                println!("{}", serde_json::json!({"account": account, "credentials": creds}));
            } else {
                println!("Created account {:?} ({}).", account.name, account.role.as_str());
                println!("  API id:                  {}", creds.api_id);
                println!("  threat-information key:  {}", creds.threat_key);
                println!("  sensor key:              {}", creds.sensor_key);
                println!("The keys are shown only now; Apiary stores only their hashes.");
            }
        }
        AccountCommand::List { json } => {
            let accounts = store.list_accounts()?;
            if json {
                println!("{}", serde_json::to_string(&accounts)?);
            } else {
                println!("{:<34} {:<12} {:<12} {:<9} NAME", "API ID", "ROLE", "QUOTA", "STATE");
                for a in accounts {
                    let quota = a.monthly_quota.map_or("unlimited".to_owned(), |q| q.to_string());
                    let state = if a.disabled { "disabled" } else { "enabled" };
                    println!("{:<34} {:<12} {:<12} {:<9} {}", a.api_id, a.role.as_str(), quota, state, a.name);
                }
            }
        }
        AccountCommand::Disable { api_id } => {
            store.set_disabled(&api_id, true)?;
            println!("Disabled {api_id}.");
        }
        AccountCommand::Enable { api_id } => {
            store.set_disabled(&api_id, false)?;
            println!("Enabled {api_id}.");
        }
        AccountCommand::RotateKey { api_id, kind } => {
            let kind = match kind {
                KeyArg::Threat => KeyKind::Threat,
                KeyArg::Sensor => KeyKind::Sensor,
            };
            let key = store.rotate_key(&api_id, kind)?;
            println!(
                "New {} key for {api_id}: {key}",
                if kind == KeyKind::Threat { "threat-information" } else { "sensor" }
            );
            println!("The old key no longer works. The new one is shown only now.");
        }
    }
    store.close()?;
    Ok(ExitCode::SUCCESS)
}
