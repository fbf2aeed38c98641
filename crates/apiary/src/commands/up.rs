//! `apiary up`: the platform and a sensor in one process on the embedded
//! store, for a first run. Creates an operator account the first time and
//! writes its keys to the data directory (mode 0600), printing them once; the
//! sensor reports to the platform over loopback with that account's sensor
//! key, exactly as a remote sensor would.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use apiary_store::{Credentials, NewAccount, Role, Store};

use crate::cli::UpArgs;
use crate::config::Settings;

pub const CREDENTIALS_FILE: &str = "credentials.json";

pub fn run(args: UpArgs, mut settings: Settings) -> anyhow::Result<ExitCode> {
    if let Some(listen) = &args.listen {
        settings.listen = listen.clone();
    }
    let creds = credentials(&settings)?;
    let sensor = if args.no_sensor { None } else { Some(sensor_config(&args, &settings, &creds)?) };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let signal = tokio::spawn(async move {
            super::serve::shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let sensor_task = sensor.map(|config| tokio::spawn(apiary_sensor::run(config, wait(stop_rx.clone()))));
        let served = super::serve::serve(settings, wait(stop_rx)).await;
        signal.abort();
        if let Some(task) = sensor_task {
            task.await.context("sensor task")??;
        }
        served
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The operator credentials: created and printed on the first run, read
/// back from the data directory afterwards.
fn credentials(settings: &Settings) -> anyhow::Result<Credentials> {
    let path = settings.data_dir.join(CREDENTIALS_FILE);
    if path.exists() {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        return serde_json::from_str(&text).with_context(|| format!("{} is not a credentials file", path.display()));
    }
    let store = super::open_store(settings)?;
    let (_, creds) = store.create_account(&NewAccount {
        name: "local operator".into(),
        monthly_quota: None,
        role: Role::AllSensors,
    })?;
    store.close()?;
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
    Ok(creds)
}

fn sensor_config(
    args: &UpArgs,
    settings: &Settings,
    creds: &Credentials,
) -> anyhow::Result<apiary_sensor::SensorConfig> {
    let mut config = match &args.sensor_config {
        Some(path) => apiary_sensor::SensorConfig::from_file(path)?,
        None => apiary_sensor::SensorConfig {
            state_dir: settings.data_dir.join("sensor"),
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ..Default::default()
        },
    };
    if args.public {
        config.bind = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    }
    let api_host = settings.listen.replace("0.0.0.0", "127.0.0.1");
    config.server.get_or_insert(apiary_sensor::ServerConfig {
        url: format!("http://{api_host}/api"),
        api_id: creds.api_id.clone(),
        api_key: creds.sensor_key.clone(),
    });
    config.check()?;
    Ok(config)
}

fn write_private(path: &Path, creds: &Credentials) -> anyhow::Result<()> {
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
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
