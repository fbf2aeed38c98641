//! Runs the sensor from a config file until Ctrl-C, for manual testing:
//! `cargo run -p apiary-sensor --example sensor -- sensor.sample.toml`
//! (The product binary is `apiary sensor --config FILE`.)

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let path = std::env::args().nth(1).unwrap_or_else(|| "sensor.sample.toml".into());
    let config = apiary_sensor::SensorConfig::from_file(path.as_ref())?;
    for l in apiary_sensor::services(&config) {
        println!("{l}");
    }
    apiary_sensor::run(config, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
