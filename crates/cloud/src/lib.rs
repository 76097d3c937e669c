//! `ad-sync-cloud`: the reference cloud side of the agent API. The server (`server`, with its
//! SQLite `store`) and the admin command line (`cli`). The wire types are in `ad_sync_api`,
//! the only part of the product it links: no LDAP, DNS or X.509 code is in the serving binary.
//! The load generator, which drives the agents' own client, is its own program
//! (`ad-sync-cloud-load`, crates/cloud-load), run by `ad-sync-cloud load`.

pub mod cli;
pub mod server;
