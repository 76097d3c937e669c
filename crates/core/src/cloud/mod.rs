//! The agent API as the wizard and the agent see it: the wire types (`api`), the client
//! (`client`) and password sealing (`sealed`). The reference server is the `ad-sync-cloud`
//! crate.

pub mod api;
pub mod client;
pub mod sealed;
pub mod system_proxy;
