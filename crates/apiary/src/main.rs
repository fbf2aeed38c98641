//! `apiary`: the one binary. Each subcommand lives in [`commands`]; this
//! file only parses the command line and sets up logging.

mod cli;
mod commands;
mod config;

use clap::Parser;

/// mimalloc rather than glibc's malloc: ingest allocates and frees every
/// event's strings on many threads, and glibc's malloc, depending on the
/// order of frees, handed memory back to the kernel only to fault it in
/// again (cleared page by page). Built without transparent huge pages,
/// which it would otherwise purge and fault in again the same way
/// (BENCHMARKS.md, "Platform core").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    // The sensor reads its own config file, not the server's.
    if let cli::Command::Sensor(args) = cli.command {
        init_logging(&config::Settings::logging_only(&cli.global));
        return match commands::sensor::run(args, &cli.global) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("apiary: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let settings = match config::Settings::load(&cli.global) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("apiary: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(&settings);
    match commands::run(cli.command, settings) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("apiary: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(settings: &config::Settings) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("APIARY_LOG").unwrap_or_else(|_| EnvFilter::new(&settings.log_level));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if settings.log_format == config::LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}
