//! The cloud side of ad-sync: the agent API's wire types (`api`), the client the wizard and the
//! agent use (`client`), password sealing (`sealed`), and the reference server
//! `ad-sync-cloud` runs (`server`, with its SQLite `store`).

pub mod api;
pub mod cli;
pub mod client;
pub mod load;
pub mod sealed;
pub mod server;
