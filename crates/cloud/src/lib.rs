//! `ad-sync-cloud`: the reference cloud side of the agent API. The server (`server`, with its
//! `store` on SQLite or PostgreSQL) and the admin command line (`cli`). The wire types are in `ad_sync_api`,
//! the only part of the product it links: no LDAP, DNS or X.509 code is in the serving binary.
//! The load generator, which drives the agents' own client, is its own program
//! (`ad-sync-cloud-load`, crates/cloud-load), run by `ad-sync-cloud load`.

pub mod cli;
pub mod server;

/// The throwaway PostgreSQL cluster the tests start (shared with the workspace's tests), for the
/// unit tests that run on both backends.
#[cfg(test)]
#[path = "../../../tests/support/postgres.rs"]
pub(crate) mod test_postgres;

/// A new empty PostgreSQL database in the tests' cluster, as `--db` takes it.
#[cfg(test)]
pub(crate) fn test_postgres_db(tag: &str) -> std::path::PathBuf {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tmp");
    std::path::PathBuf::from(test_postgres::cluster(&base).new_database(tag))
}
