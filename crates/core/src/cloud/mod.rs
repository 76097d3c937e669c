//! The agent API as the wizard and the agent see it: the wire types (`api`), the client
//! (`client`) and password sealing (`sealed`). The reference server is the `ad-sync-cloud`
//! crate.

pub use ad_sync_api::{api, sealed};
pub mod client;
pub mod system_proxy;
