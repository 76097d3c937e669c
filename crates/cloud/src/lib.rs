//! `ad-sync-cloud`: the reference cloud side of the agent API. The server (`server`, with its
//! SQLite `store`), the admin command line (`cli`) and the load generator (`load`). The wire
//! types and the client are in `ad_sync_core::cloud`.

pub mod cli;
pub mod load;
pub mod server;
