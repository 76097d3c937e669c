//! `ad-sync-setup`'s library: the command line (`cli`). The rest of the product is in crates/:
//! the core (`ad_sync_core`, re-exported here under its module names so the CLI and the tests
//! read `ad_sync::dn`, `ad_sync::preflight`, …), the wizard window (`ad_sync_wizard`, re-exported
//! as `wizard`), the agent (`ad_sync_agent`) and the reference cloud (`ad_sync_cloud`); see the
//! workspace's Cargo.toml for the layering.

pub mod cli;
#[cfg(windows)]
pub mod console;

pub use ad_sync_core::{
    answers, cloud, connect_key, directory, dn, install, preflight, progress, secret, secrets,
    status, time_fmt,
};
pub use ad_sync_wizard as wizard;
