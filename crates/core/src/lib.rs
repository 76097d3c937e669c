//! The core of ad-sync, shared by the wizard, the agent and the reference cloud: everything that
//! is neither a window nor a server.
//!
//! Pure: `dn`, `answers`, `connect_key`, `preflight::evaluate`, `install::plan`. Adapters:
//! `directory` (LDAP to the DC), `cloud::client` (HTTPS to the cloud), `secrets` and
//! `install::{fsops, service}` (the machine). See docs/ and DESIGN.md for the layers.

/// The agent API's pure half lives in `ad-sync-api` (the reference cloud needs it alone);
/// here under the names the rest of the product has always used.
pub use ad_sync_api::{connect_key, dn, guid, mapping, secret, time_fmt};

pub mod adopt;
pub mod answers;
pub mod cloud;
pub mod directory;
pub mod fault;
pub mod import_report;
pub mod install;
pub mod policy;
pub mod preflight;
pub mod progress;
pub mod secrets;
pub mod source_scope;
pub mod status;
pub mod tier0;
