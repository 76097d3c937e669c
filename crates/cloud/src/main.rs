//! `ad-sync-cloud`: the reference cloud side of the agent API. See `ad_sync_cloud::cli`.

use clap::Parser as _;

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AD_SYNC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = ad_sync_cloud::cli::Cli::parse();
    std::process::exit(ad_sync_cloud::cli::run(cli));
}
