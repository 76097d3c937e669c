//! `ad-sync-setup`: the setup wizard and its command-line twin. Everything lives in the library.
//!
//! On Windows it is a GUI program (no console window opens behind the wizard on double-click).
//! Started from a console with nothing redirected, it attaches to that console so the command
//! line still prints; `ad-sync-setup.com` (src/bin/ad-sync-setup-console.rs) is the twin a
//! shell waits for.
#![cfg_attr(windows, windows_subsystem = "windows")]

use clap::Parser;

fn main() {
    #[cfg(windows)]
    ad_sync::console::attach_to_parent_console();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AD_SYNC_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = ad_sync::cli::Cli::parse();
    std::process::exit(ad_sync::cli::run(cli));
}
