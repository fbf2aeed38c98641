//! `apiary sensor`: the honeypot agent on its own, delivering to a server.

use std::process::ExitCode;

use anyhow::Context;
use apiary_sensor::SensorConfig;

use crate::cli::{GlobalArgs, SensorArgs, SensorCommand};

pub fn load_config(global: &GlobalArgs) -> anyhow::Result<SensorConfig> {
    let config = match &global.config {
        Some(path) => SensorConfig::from_file(path)?,
        None => SensorConfig::default(),
    };
    config.check()?;
    Ok(config)
}

pub fn run(args: SensorArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(global)?;
    match args.command {
        Some(SensorCommand::Services) => {
            for listener in apiary_sensor::services(&config) {
                println!("{listener}");
            }
        }
        None => {
            if config.server.is_none() {
                eprintln!("apiary: no [server] in the sensor config: events are kept in the local queue only");
            }
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(apiary_sensor::run(config, super::serve::shutdown_signal()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
