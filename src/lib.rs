//! ad-sync: an Active Directory sync agent for a cloud directory, and the installer that sets
//! it up. The library holds everything the binaries share; see docs/ and DESIGN.md for the
//! layers (pure core: `dn`, `answers`, `preflight::evaluate`; adapters: `directory`).

pub mod agent;
pub mod answers;
pub mod cli;
pub mod cloud;
pub mod connect_key;
pub mod directory;
pub mod dn;
pub mod install;
pub mod preflight;
pub mod secret;
pub mod secrets;
pub mod time_fmt;
pub mod wizard;
