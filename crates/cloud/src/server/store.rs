//! The reference cloud's storage: one SQLite file (WAL; the embedded default) or one PostgreSQL
//! database (several nodes), holding domain instances, connect keys (hashes only), agents
//! (credential hashes and public keys), the directory the agents mirror, its change log, sealed
//! password envelopes and per-change results. The SQL is written once, against `db.rs`, the
//! seam with the two backends; the decisions that need no database are in `rules.rs`.
//!
//! The server and the admin subcommands open the same database; every multi-row decision
//! (enrolling, electing a primary, appending a change) runs in one writing transaction
//! (`Store::write`), so it is atomic across threads, processes and nodes: `BEGIN IMMEDIATE` on
//! SQLite, `SERIALIZABLE` run again when another ran into it on PostgreSQL.
//!
//! One file per concern: domains and keys (`keys`), agents and the election (`agents`), the
//! change feed (`feed`), alerts (`alerts`), imports (`import`), AD as a source (`source`),
//! forest to forest (`mirror`), contacts (`contacts`), moving a file to PostgreSQL
//! (`migrate`). This file holds the schema, its migrations, opening either backend, the
//! directory's admin commands and the names' rules.
//!
//! Not here: HTTP, rate limiting (server/mod.rs), key parsing (connect_key.rs).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::db::{self, Connection, OptionalExtension, Transaction, params};

use ad_sync_api::api::{
    self, AckResponse, ApplyStatus, Change, ChangeBody, ChangeResult, ChangesResponse,
    EnrollResponse, ErrorCode, Group, HeartbeatRequest, HeartbeatResponse, KeyCheckResponse,
    KeyState, MemberType, Membership, Role, User,
};
mod agents;
mod alerts;
mod contacts;
mod feed;
mod import;
mod keys;
mod migrate;
mod mirror;
mod source;
pub use super::rules::RESUME_WINDOW_SECS;
pub(crate) use agents::require_primary;
pub use alerts::Settled;
pub use contacts::ContactRow;
use feed::{FEED_SCHEMA, append_change, migrate_v9};
pub use import::Listed;
pub use migrate::Moved;
pub use mirror::{MirrorRow, Reflected};
pub use source::{REFUSALS_LISTED, SourceOverview};
pub use source::{RETENTION as SOURCE_RETENTION, RETENTION_DAYS as SOURCE_RETENTION_DAYS};

use ad_sync_api::connect_key::ConnectKey;
use ad_sync_api::dn::Dn;
use ad_sync_api::sealed;
use ad_sync_api::secret::Secret;
use ad_sync_api::time_fmt::unix_to_rfc3339;

/// 2: users and groups carry a stable `id` (renames keep it), and the change bodies name it.
/// 3: users have a display name, and users and groups links to the AD objects they were
/// imported from.
/// 4: users, groups, memberships and changes belong to a domain instance (an agent sees only
/// its own domain's); keys can be revoked; an agent's first heartbeat is recorded (an
/// enrollment is resumed only before it).
/// 5: agents report their runs: disconnections held by the threshold, failed changes, the last
/// run and the last successful one.
/// 6: AD as a source: users' authority (`source`), soft deletion, mapped attributes, the
/// cloud's DirSync cursor.
/// 7: groups from AD: their authority, soft deletion and description, and AD's membership
/// facts by objectGUID (`source_members`).
/// 8: forest to forest: a domain instance mirrored into another (`mirrors`), the copies marked
/// with the object they copy (`mirror_of`) and the domain it is in (`mirror_from`); agents
/// report their last reconciliation of AD and the suspensions from AD they hold; contacts
/// from AD (`contacts`, matched on their e-mail address); each domain's retention of what AD
/// deleted (`source_retention_days`).
/// 9: each domain numbers its own changes (`domains.last_seq`, taken under the domain's row
/// lock), so a reader never sees a later number committed before an earlier one; changes and
/// password envelopes are keyed by (domain, seq).
const SCHEMA_VERSION: i64 = 9;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS domains (
    id INTEGER PRIMARY KEY,
    dn TEXT NOT NULL,
    dn_key TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    primary_agent TEXT,
    acked_cursor INTEGER NOT NULL DEFAULT 0,
    source_retention_days INTEGER,
    last_seq INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS keys (
    id INTEGER PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    domain_id INTEGER NOT NULL REFERENCES domains(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER,
    used_by TEXT,
    revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS agents (
    id TEXT PRIMARY KEY,
    domain_id INTEGER NOT NULL REFERENCES domains(id),
    credential_hash TEXT NOT NULL UNIQUE,
    public_key BLOB NOT NULL,
    host TEXT NOT NULL,
    version TEXT NOT NULL,
    os TEXT NOT NULL,
    enrolled_at INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'ok',
    message TEXT,
    deregistered_at INTEGER,
    first_heartbeat_at INTEGER,
    held INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    last_run INTEGER,
    last_success INTEGER,
    last_reconcile INTEGER,
    held_from_ad INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS alerts (
    agent_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    raised_at INTEGER NOT NULL,
    PRIMARY KEY (agent_id, kind)
);
CREATE TABLE IF NOT EXISTS users (
    domain_id INTEGER NOT NULL REFERENCES domains(id),
    username TEXT NOT NULL COLLATE NOCASE,
    id TEXT NOT NULL UNIQUE,
    given_name TEXT NOT NULL,
    surname TEXT NOT NULL,
    email TEXT,
    suspended INTEGER NOT NULL DEFAULT 0,
    locked INTEGER NOT NULL DEFAULT 0,
    display_name TEXT,
    source TEXT NOT NULL DEFAULT 'cloud',
    deleted_at INTEGER,
    attributes TEXT,
    mirror_of TEXT,
    mirror_from INTEGER,
    PRIMARY KEY (domain_id, username)
);
CREATE TABLE IF NOT EXISTS groups (
    domain_id INTEGER NOT NULL REFERENCES domains(id),
    name TEXT NOT NULL COLLATE NOCASE,
    id TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL DEFAULT 'cloud',
    deleted_at INTEGER,
    description TEXT,
    mirror_of TEXT,
    mirror_from INTEGER,
    PRIMARY KEY (domain_id, name)
);
CREATE TABLE IF NOT EXISTS memberships (
    domain_id INTEGER NOT NULL REFERENCES domains(id),
    group_name TEXT NOT NULL COLLATE NOCASE,
    member TEXT NOT NULL COLLATE NOCASE,
    member_type TEXT NOT NULL,
    PRIMARY KEY (domain_id, group_name, member, member_type)
);
CREATE TABLE IF NOT EXISTS links (
    object_id TEXT NOT NULL,
    domain_id INTEGER NOT NULL REFERENCES domains(id),
    guid TEXT NOT NULL COLLATE NOCASE,
    agent_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (object_id, domain_id),
    UNIQUE (domain_id, guid)
);
CREATE TABLE IF NOT EXISTS acks (
    domain_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    agent_id TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (domain_id, seq)
);
CREATE TABLE IF NOT EXISTS source_members (
    domain_id INTEGER NOT NULL REFERENCES domains(id),
    group_guid TEXT NOT NULL,
    member_guid TEXT NOT NULL,
    PRIMARY KEY (domain_id, group_guid, member_guid)
);
-- Covering, so that SQLite prefers it to the primary key's index (which would scan the whole
-- domain's facts for one member: 75% of the cloud's time in a first export of 10,000 users).
DROP INDEX IF EXISTS source_members_by_member;
CREATE INDEX IF NOT EXISTS source_members_of_member ON source_members(domain_id, member_guid, group_guid);
CREATE TABLE IF NOT EXISTS source_refusals (
    domain_id INTEGER NOT NULL REFERENCES domains(id),
    guid TEXT NOT NULL,
    message TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (domain_id, guid)
);
CREATE TABLE IF NOT EXISTS contacts (
    domain_id INTEGER NOT NULL REFERENCES domains(id),
    id TEXT NOT NULL UNIQUE,
    mail TEXT NOT NULL COLLATE NOCASE,
    fields TEXT NOT NULL,
    deleted_at INTEGER,
    PRIMARY KEY (domain_id, mail)
);
CREATE TABLE IF NOT EXISTS mirrors (
    from_domain INTEGER NOT NULL REFERENCES domains(id),
    to_domain INTEGER NOT NULL REFERENCES domains(id),
    since INTEGER NOT NULL,
    PRIMARY KEY (from_domain, to_domain)
);
CREATE TABLE IF NOT EXISTS source_cursors (
    domain_id INTEGER PRIMARY KEY REFERENCES domains(id),
    cookie TEXT NOT NULL,
    dc TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    at INTEGER NOT NULL
);
";

/// A failure the API reports: a code from the documented list and words for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

impl From<db::Error> for ApiError {
    fn from(e: db::Error) -> Self {
        // The database's own words go to the server log only; the client learns it was not
        // its fault and nothing was changed (the transaction rolled back). A transaction that
        // another ran into is run again (`Store::transact`): not an error unless it stays one.
        if e.is_retryable() {
            tracing::debug!(error = %e, "transaction ran into another");
        } else {
            tracing::error!(error = %e, "database error");
        }
        ApiError::new(
            ErrorCode::Internal,
            "the cloud could not complete the request (storage error); nothing was changed, try again",
        )
    }
}

/// What an admin command got wrong, in words for the operator.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "database {path}: {source}; check that it is an ad-sync-cloud database this user may write (a file: its permissions; PostgreSQL: that the server is up and the user's rights)"
    )]
    Db { path: String, source: db::Error },
}

/// Election settings: how often agents call in and how long a silent primary keeps its role.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub heartbeat_interval: Duration,
    pub primary_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat_interval: Duration::from_secs(30),
            primary_timeout: Duration::from_secs(90),
        }
    }
}

/// The agent an authenticated request comes from.
#[derive(Debug, Clone)]
pub struct AgentAuth {
    pub agent_id: String,
    pub domain_id: i64,
}

#[derive(Debug, Clone)]
pub struct DomainRow {
    pub id: i64,
    pub dn: String,
    pub created_at: i64,
    pub primary_agent: Option<String>,
    pub acked_cursor: i64,
    /// The number of the domain's last change (its changes are numbered 1, 2, 3...).
    pub last_seq: i64,
}

#[derive(Debug, Clone)]
pub struct KeyRow {
    pub hint: String,
    pub domain: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub used_by: Option<String>,
    pub revoked_at: Option<i64>,
}

impl KeyRow {
    pub fn state(&self, now: i64) -> KeyState {
        super::rules::key_state(self.revoked_at, self.used_at, self.expires_at, now)
    }
}

#[derive(Debug, Clone)]
pub struct AgentRow {
    pub id: String,
    pub domain: String,
    pub host: String,
    pub version: String,
    pub os: String,
    pub enrolled_at: i64,
    pub last_seen: i64,
    pub status: String,
    pub message: Option<String>,
    pub deregistered_at: Option<i64>,
    pub primary: bool,
    /// Disconnections held by the deletion threshold, as the agent last said.
    pub held: i64,
    /// Changes its last run failed.
    pub failed: i64,
    pub last_run: Option<i64>,
    pub last_success: Option<i64>,
    /// AD as a source, for its domain's primary (0 for a standby): users and groups from AD
    /// that the cloud refused and that AD has not sent again in a form it takes.
    pub source_refused: i64,
}

pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

fn random_token(bytes: usize) -> Result<String, ApiError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|_| {
        ApiError::new(
            ErrorCode::Internal,
            "the cloud could not get random bytes from the OS",
        )
    })?;
    Ok(base32::encode(base32::Alphabet::Crockford, &buf))
}

/// A new stable id for a user (`u-`) or a group (`g-`): 64 random bits, hex.
fn new_id(prefix: &str) -> db::Result<String> {
    let mut buf = [0u8; 8];
    getrandom::fill(&mut buf).map_err(|e| {
        db::Error::Other(Box::new(std::io::Error::other(format!(
            "no random bytes from the OS: {e}"
        ))))
    })?;
    Ok(format!(
        "{prefix}-{}",
        buf.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// Schema 1 had no ids. Gives every user and group one, and rewrites the change log so each
/// change names the id its subject had at that point (replaying it in order: a name removed and
/// added again is a new user, as it was then).
fn migrate_v1(conn: &Connection) -> db::Result<()> {
    use std::collections::HashMap;
    let tx = conn.unchecked_transaction()?;
    tx.execute_batch(
        "ALTER TABLE users ADD COLUMN id TEXT; ALTER TABLE groups ADD COLUMN id TEXT;",
    )?;
    let rows: Vec<(i64, String)> = tx
        .prepare("SELECT seq, body FROM changes ORDER BY seq")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut users: HashMap<String, String> = HashMap::new();
    let mut groups: HashMap<String, String> = HashMap::new();
    fn id_of(map: &mut HashMap<String, String>, name: &str, prefix: &str) -> db::Result<String> {
        let key = name.to_lowercase();
        if let Some(id) = map.get(&key) {
            return Ok(id.clone());
        }
        let id = new_id(prefix)?;
        map.insert(key, id.clone());
        Ok(id)
    }
    for (seq, body) in rows {
        let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&body) else {
            continue;
        };
        let text = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
        match v["type"].as_str().unwrap_or_default() {
            "user.upsert" => {
                let name = text(&v["user"], "username");
                v["user"]["id"] = id_of(&mut users, &name, "u")?.into();
            }
            "user.password" => {
                let name = text(&v, "username");
                v["id"] = id_of(&mut users, &name, "u")?.into();
            }
            "user.remove" => {
                let name = text(&v, "username");
                v["id"] = id_of(&mut users, &name, "u")?.into();
                users.remove(&name.to_lowercase());
            }
            "group.upsert" => {
                let name = text(&v["group"], "name");
                v["group"]["id"] = id_of(&mut groups, &name, "g")?.into();
            }
            "group.remove" => {
                let name = text(&v, "name");
                v["id"] = id_of(&mut groups, &name, "g")?.into();
                groups.remove(&name.to_lowercase());
            }
            "membership.add" | "membership.remove" => {
                let group = text(&v, "group");
                let member = text(&v, "member");
                v["group_id"] = id_of(&mut groups, &group, "g")?.into();
                v["member_id"] = if v["member_type"] == "group" {
                    id_of(&mut groups, &member, "g")?
                } else {
                    id_of(&mut users, &member, "u")?
                }
                .into();
            }
            _ => continue,
        }
        tx.execute(
            "UPDATE changes SET body = ?2 WHERE seq = ?1",
            params![seq, v.to_string()],
        )?;
    }
    let names: Vec<String> = tx
        .prepare("SELECT username FROM users")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for name in names {
        let id = id_of(&mut users, &name, "u")?;
        tx.execute(
            "UPDATE users SET id = ?2 WHERE username = ?1",
            params![name, id],
        )?;
    }
    let names: Vec<String> = tx
        .prepare("SELECT name FROM groups")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for name in names {
        let id = id_of(&mut groups, &name, "g")?;
        tx.execute(
            "UPDATE groups SET id = ?2 WHERE name = ?1",
            params![name, id],
        )?;
    }
    tx.execute_batch(
        "CREATE UNIQUE INDEX IF NOT EXISTS users_id ON users(id);
         CREATE UNIQUE INDEX IF NOT EXISTS groups_id ON groups(id);",
    )?;
    tx.commit()
}

/// Schema 3 to 4: one directory shared by every domain instance becomes the directory of one
/// of them. A database with one domain instance (the usual case) keeps everything as it was;
/// with several, the directory goes to the first one added, and the log says so (the others
/// start empty: their agents had been shown every domain's users, which 4 ends). Returns that
/// warning, if any.
fn migrate_v4(conn: &Connection) -> Result<Option<String>, String> {
    let db = |e: db::Error| e.to_string();
    let tx = conn.unchecked_transaction().map_err(db)?;
    let domains: Vec<(i64, String)> = tx
        .prepare("SELECT id, dn FROM domains ORDER BY id")
        .and_then(|mut st| st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(db)?;
    let objects: i64 = tx
        .query_row(
            "SELECT (SELECT COUNT(*) FROM users) + (SELECT COUNT(*) FROM groups) + (SELECT COUNT(*) FROM changes)",
            [],
            |r| r.get(0),
        )
        .map_err(db)?;
    if domains.is_empty() && objects > 0 {
        return Err("it holds users, groups or changes but no domain instance, so they cannot be given to one; add the domain with an ad-sync-cloud of the previous version first".into());
    }
    tx.execute_batch(
        "ALTER TABLE keys ADD COLUMN revoked_at INTEGER;
         ALTER TABLE agents ADD COLUMN first_heartbeat_at INTEGER;
         UPDATE agents SET first_heartbeat_at = last_seen WHERE last_seen > enrolled_at;
         CREATE TABLE users_v4 (
             domain_id INTEGER NOT NULL REFERENCES domains(id),
             username TEXT NOT NULL COLLATE NOCASE,
             id TEXT NOT NULL UNIQUE,
             given_name TEXT NOT NULL,
             surname TEXT NOT NULL,
             email TEXT,
             suspended INTEGER NOT NULL DEFAULT 0,
             locked INTEGER NOT NULL DEFAULT 0,
             display_name TEXT,
             PRIMARY KEY (domain_id, username));
         INSERT INTO users_v4 SELECT (SELECT MIN(id) FROM domains), username, id, given_name, surname, email, suspended, locked, display_name FROM users;
         DROP TABLE users;
         ALTER TABLE users_v4 RENAME TO users;
         CREATE TABLE groups_v4 (
             domain_id INTEGER NOT NULL REFERENCES domains(id),
             name TEXT NOT NULL COLLATE NOCASE,
             id TEXT NOT NULL UNIQUE,
             PRIMARY KEY (domain_id, name));
         INSERT INTO groups_v4 SELECT (SELECT MIN(id) FROM domains), name, id FROM groups;
         DROP TABLE groups;
         ALTER TABLE groups_v4 RENAME TO groups;
         CREATE TABLE memberships_v4 (
             domain_id INTEGER NOT NULL REFERENCES domains(id),
             group_name TEXT NOT NULL COLLATE NOCASE,
             member TEXT NOT NULL COLLATE NOCASE,
             member_type TEXT NOT NULL,
             PRIMARY KEY (domain_id, group_name, member, member_type));
         INSERT INTO memberships_v4 SELECT (SELECT MIN(id) FROM domains), group_name, member, member_type FROM memberships;
         DROP TABLE memberships;
         ALTER TABLE memberships_v4 RENAME TO memberships;
         ALTER TABLE changes ADD COLUMN domain_id INTEGER;
         UPDATE changes SET domain_id = (SELECT MIN(id) FROM domains);",
    )
    .map_err(db)?;
    tx.commit().map_err(db)?;
    Ok((domains.len() > 1 && objects > 0).then(|| {
        format!(
            "this database had {} domain instances sharing one directory; each domain instance now has its own, and the existing users, groups and changes belong to {} (the first added). Add the others' users again with --domain",
            domains.len(),
            domains[0].1
        )
    }))
}

/// TLS to PostgreSQL: the server's chain must end at a certificate of the file named by
/// `PGSSLROOTCERT` (libpq's variable), and its certificate must name the host of the address.
fn postgres_tls(
    invalid: &dyn Fn(String) -> AdminError,
) -> Result<rustls::ClientConfig, AdminError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let Some(file) = std::env::var_os("PGSSLROOTCERT") else {
        return Err(invalid(
            "the database is reached over TLS (it is not on this machine, or sslmode=require), and PGSSLROOTCERT names no CA file; set PGSSLROOTCERT to the PEM file of the CA that signed the PostgreSQL server's certificate (or, on a network you trust, add ?sslmode=disable)".into(),
        ));
    };
    let path = std::path::PathBuf::from(file);
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid(format!("PGSSLROOTCERT {}: {e}", path.display())))?;
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| invalid(format!("PGSSLROOTCERT {}: {e}", path.display())))?;
    }
    if roots.is_empty() {
        return Err(invalid(format!(
            "PGSSLROOTCERT {}: holds no PEM certificate; name the CA file that signed the PostgreSQL server's certificate",
            path.display()
        )));
    }
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map(|b| b.with_root_certificates(roots).with_no_client_auth())
    .map_err(|e| invalid(e.to_string()))
}

/// A PostgreSQL address as it may be shown: `postgres://user:secret@host/db` as
/// `postgres://user:…@host/db`.
pub fn without_password(url: &str) -> String {
    // A password as a parameter (`?password=…`) first.
    let url = match url.split_once('?') {
        Some((base, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some(("password", _)) => "password=…".to_string(),
                    _ => p.to_string(),
                })
                .collect();
            format!("{base}?{}", query.join("&"))
        }
        None => url.to_string(),
    };
    let url = url.as_str();
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some((auth, host)) if !auth.contains('/') => (auth, host),
        _ => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:…@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod address_tests {
    #[test]
    fn a_postgres_address_is_shown_without_its_password() {
        for (url, shown) in [
            (
                "postgres://app@db:5432/cloud",
                "postgres://app@db:5432/cloud",
            ),
            (
                "postgres://app:s3cret@db:5432/cloud",
                "postgres://app:…@db:5432/cloud",
            ),
            (
                "postgresql://app:p@ss@db/cloud",
                "postgresql://app:…@db/cloud",
            ),
            (
                "postgres://db/cloud?user=app&password=s3cret",
                "postgres://db/cloud?user=app&password=…",
            ),
            (
                "postgres://db/cloud?sslmode=disable",
                "postgres://db/cloud?sslmode=disable",
            ),
        ] {
            assert_eq!(super::without_password(url), shown, "{url}");
        }
    }
}

/// `--db` names a PostgreSQL database rather than a file.
pub fn is_postgres_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

pub fn credential_hash(credential: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(credential.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Store {
    /// Opens (creating if needed) the database file, mode 0600 on Unix.
    pub fn open(path: &Path) -> Result<Store, AdminError> {
        if let Some(url) = path.to_str().filter(|p| is_postgres_url(p)) {
            // On a thread of its own: the PostgreSQL client drives its connection with a
            // runtime of its own, which cannot run inside the server's (this is called from
            // there). The server's requests reach the store on blocking threads.
            return std::thread::scope(|scope| {
                scope
                    .spawn(|| Store::open_postgres(url))
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            });
        }
        let db_err = |source: rusqlite::Error| AdminError::Db {
            path: path.display().to_string(),
            source: source.into(),
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.is_dir()
        {
            return Err(AdminError::Invalid(format!(
                "--db {}: the folder {} does not exist; create it or choose another path",
                path.display(),
                parent.display()
            )));
        }
        // Created private (0600) before SQLite opens it, so it is never readable by others,
        // even for a moment; SQLite gives its -wal and -shm files the same mode.
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(AdminError::Invalid(format!(
                        "--db {}: cannot create it: {e}",
                        path.display()
                    )));
                }
            }
        }
        let conn = rusqlite::Connection::open(path).map_err(db_err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
                |e| {
                    AdminError::Invalid(format!(
                        "--db {}: it cannot be made private (mode 0600): {e}; check who owns it",
                        path.display()
                    ))
                },
            )?;
        }
        conn.busy_timeout(Duration::from_secs(10)).map_err(db_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db_err)?;
        // A page cache of 32 MiB (SQLite's default is 2 MiB): a domain of 50,000 users is a
        // database of about 27 MB, and with 2 MiB every count or list of it read its pages
        // again from the operating system (half the time of such a count was in pread).
        conn.pragma_update(None, "cache_size", -32 * 1024)
            .map_err(db_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(db_err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(db_err)?;
        if version > SCHEMA_VERSION {
            return Err(AdminError::Invalid(format!(
                "--db {}: written by a newer ad-sync-cloud (schema {version}, this build knows {SCHEMA_VERSION}); use the newer binary",
                path.display()
            )));
        }
        let conn = Connection::sqlite(conn);
        let db_err = |source: db::Error| AdminError::Db {
            path: path.display().to_string(),
            source,
        };
        if version == 1 {
            migrate_v1(&conn).map_err(db_err)?;
        }
        if (1..3).contains(&version) {
            conn.execute_batch("ALTER TABLE users ADD COLUMN display_name TEXT;")
                .map_err(db_err)?;
        }
        if (1..4).contains(&version) {
            let warning = migrate_v4(&conn).map_err(|e| {
                AdminError::Invalid(format!(
                    "--db {}: cannot be brought to this version's schema: {e}",
                    path.display()
                ))
            })?;
            if let Some(w) = warning {
                tracing::warn!("--db {}: {w}", path.display());
                eprintln!("warning: --db {}: {w}", path.display());
            }
        }
        if (1..5).contains(&version) {
            conn.execute_batch(
                "ALTER TABLE agents ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
                 ALTER TABLE agents ADD COLUMN failed INTEGER NOT NULL DEFAULT 0;
                 ALTER TABLE agents ADD COLUMN last_run INTEGER;
                 ALTER TABLE agents ADD COLUMN last_success INTEGER;",
            )
            .map_err(db_err)?;
        }
        if (1..6).contains(&version) {
            // AD as a source: who owns each user, soft deletion, the mapped fields beyond the
            // columns (the cursor's table is new, made by SCHEMA below).
            conn.execute_batch(
                "ALTER TABLE users ADD COLUMN source TEXT NOT NULL DEFAULT 'cloud';
                 ALTER TABLE users ADD COLUMN deleted_at INTEGER;
                 ALTER TABLE users ADD COLUMN attributes TEXT;",
            )
            .map_err(db_err)?;
        }
        if (1..7).contains(&version) {
            // Groups from AD (source_members is new, made by SCHEMA below).
            conn.execute_batch(
                "ALTER TABLE groups ADD COLUMN source TEXT NOT NULL DEFAULT 'cloud';
                 ALTER TABLE groups ADD COLUMN deleted_at INTEGER;
                 ALTER TABLE groups ADD COLUMN description TEXT;",
            )
            .map_err(db_err)?;
        }
        if (1..8).contains(&version) {
            // Forest to forest (the mirrors table is new, made by SCHEMA below).
            conn.execute_batch(
                "ALTER TABLE users ADD COLUMN mirror_of TEXT;
                 ALTER TABLE users ADD COLUMN mirror_from INTEGER;
                 ALTER TABLE domains ADD COLUMN source_retention_days INTEGER;
                 ALTER TABLE agents ADD COLUMN last_reconcile INTEGER;
                 ALTER TABLE agents ADD COLUMN held_from_ad INTEGER NOT NULL DEFAULT 0;
                 ALTER TABLE groups ADD COLUMN mirror_of TEXT;
                 ALTER TABLE groups ADD COLUMN mirror_from INTEGER;",
            )
            .map_err(db_err)?;
        }
        if (1..9).contains(&version) {
            migrate_v9(&conn).map_err(db_err)?;
        }
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        conn.execute_batch(FEED_SCHEMA).map_err(db_err)?;
        conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
            .map_err(db_err)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    /// Opens a PostgreSQL database (`postgres://user@host:port/name`), creating this version's
    /// schema in it if it has none. Several nodes may open it at once: the schema is made under
    /// an advisory lock, by the first.
    fn open_postgres(url: &str) -> Result<Store, AdminError> {
        let shown = without_password(url);
        let invalid = |what: String| AdminError::Invalid(format!("--db {shown}: {what}"));
        let mut config: postgres::Config = url.parse().map_err(|e| {
            invalid(format!(
                "not a PostgreSQL address ({e}); write it as postgres://USER@HOST:PORT/DATABASE"
            ))
        })?;
        if config.get_password().is_some() {
            return Err(invalid(
                "the address carries a password, which every user of this machine could read in the process list; take it out and put it in the environment variable PGPASSWORD".into(),
            ));
        }
        if let Ok(password) = std::env::var("PGPASSWORD") {
            config.password(password);
        }
        // Every wait is bounded: connecting, a statement, a lock, and a transaction left open
        // by a node that stopped answering (the server ends it and frees its locks).
        config.connect_timeout(Duration::from_secs(10));
        config.options(
            "-c statement_timeout=30000 -c lock_timeout=15000 -c idle_in_transaction_session_timeout=60000 -c client_min_messages=warning",
        );
        config.application_name("ad-sync-cloud");
        let tls = {
            use super::rules::{DbTls, SslAsked, db_tls, is_local_host};
            let asked = match config.get_ssl_mode() {
                postgres::config::SslMode::Disable => SslAsked::Disable,
                postgres::config::SslMode::Require => SslAsked::Require,
                _ => SslAsked::Prefer,
            };
            let local = config.get_hosts().iter().all(|h| match h {
                postgres::config::Host::Tcp(name) => is_local_host(name),
                #[cfg(unix)]
                postgres::config::Host::Unix(_) => true,
            });
            match db_tls(asked, local) {
                DbTls::Plain => {
                    config.ssl_mode(postgres::config::SslMode::Disable);
                    None
                }
                DbTls::Verified => {
                    // Require, never prefer: a failed handshake ends the attempt, it does not
                    // go on in plain text.
                    config.ssl_mode(postgres::config::SslMode::Require);
                    Some(postgres_tls(&invalid)?)
                }
            }
        };
        let connected = match tls {
            None => config.connect(postgres::NoTls),
            Some(tls) => config.connect(super::db_tls::MakeRustls::new(tls)),
        };
        let client = connected.map_err(|e| {
            invalid(format!(
                "cannot connect: {}; check that the server is running, the address and user are right and this host may connect",
                db::Error::from(e)
            ))
        })?;
        let conn = Connection::postgres(client);
        let db_err = |source: db::Error| AdminError::Db {
            path: shown.clone(),
            source,
        };
        let tx = conn.unchecked_transaction().map_err(db_err)?;
        tx.execute_batch(
            "SELECT pg_advisory_xact_lock(7316001);
             CREATE TABLE IF NOT EXISTS ad_sync_schema (version BIGINT NOT NULL);",
        )
        .map_err(db_err)?;
        let version: Option<i64> = tx
            .query_row("SELECT MAX(version) FROM ad_sync_schema", [], |r| r.get(0))
            .map_err(db_err)?;
        match version {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(invalid(format!(
                    "written by a newer ad-sync-cloud (schema {v}, this build knows {SCHEMA_VERSION}); use the newer binary"
                )));
            }
            Some(v) if v < SCHEMA_VERSION => {
                return Err(invalid(format!(
                    "holds schema {v}, which no release of ad-sync-cloud wrote to PostgreSQL; use a new database"
                )));
            }
            Some(_) => {}
            None => {
                tx.execute_batch(&format!(
                    "CREATE COLLATION IF NOT EXISTS nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
                     {}
                     {}
                     INSERT INTO ad_sync_schema (version) VALUES ({SCHEMA_VERSION});",
                    db::postgres_schema(SCHEMA),
                    db::postgres_schema(FEED_SCHEMA)
                ))
                .map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path: PathBuf::from(shown),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (the transaction rolls back
        // on drop), so a poisoned lock is safe to keep using.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn admin_db(&self) -> impl Fn(db::Error) -> AdminError + '_ {
        move |source| AdminError::Db {
            path: self.path.display().to_string(),
            source,
        }
    }

    // ---- admin: domains and keys -------------------------------------------------------------

    // ---- alerts ------------------------------------------------------------------------------

    // ---- admin: the directory ----------------------------------------------------------------

    /// Runs an admin change in one `BEGIN IMMEDIATE` transaction: all of it, or (on any refusal
    /// or storage error) none of it.
    /// The domain instance an admin command works on: the one named (any DN form), or the only
    /// one there is.
    pub fn domain_id(&self, named: Option<&str>) -> Result<i64, AdminError> {
        let domains = self.domains()?;
        if let Some(text) = named {
            let dn = api::parse_domain_dn(text)
                .map_err(|e| AdminError::Invalid(format!("--domain: {e}")))?;
            let key = api::domain_key(&dn);
            return domains
                .iter()
                .find(|d| {
                    api::parse_domain_dn(&d.dn).is_ok_and(|x| api::domain_key(&x) == key)
                })
                .map(|d| d.id)
                .ok_or_else(|| {
                    AdminError::Invalid(format!(
                        "--domain {text}: this cloud has no such domain instance; `ad-sync-cloud domain list` shows them, `domain add` adds one"
                    ))
                });
        }
        match domains.as_slice() {
            [only] => Ok(only.id),
            [] => Err(AdminError::Invalid(
                "this cloud has no domain instance yet; add one first: ad-sync-cloud domain add DC=example,DC=com".into(),
            )),
            several => Err(AdminError::Invalid(format!(
                "this cloud has {} domain instances ({}); say which with --domain",
                several.len(),
                several.iter().map(|d| d.dn.as_str()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// Runs `f` in one writing transaction and commits what it did, or (when it fails) none
    /// of it. On PostgreSQL a transaction that another node's ran into is run again from the
    /// start, as PostgreSQL documents for SERIALIZABLE; so `f` may run more than once and
    /// must do nothing but through `tx`. SQLite's writers take turns, and `f` runs once.
    pub(crate) fn write<T, E: From<db::Error>>(
        &self,
        f: impl FnMut(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.transact(true, f)
    }

    /// As `write`, but with `commit` false what `f` did is rolled back (a dry run).
    ///
    /// On PostgreSQL the first attempt runs alongside every other node's (SERIALIZABLE, holding
    /// the cloud's writer lock shared: most transactions touch different rows and never meet).
    /// One that was run into runs again holding the lock alone, taken before it begins: the
    /// others have finished and the next wait, so it cannot lose again, and a transaction that
    /// keeps meeting others is never starved.
    pub(crate) fn transact<T, E: From<db::Error>>(
        &self,
        commit: bool,
        mut f: impl FnMut(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        const ATTEMPTS: u32 = 20;
        let conn = self.lock();
        let conn: &Connection = &conn;
        let mut attempt = 0;
        loop {
            attempt += 1;
            conn.take_conflict();
            let turn = conn.writer_turn(attempt > 1).map_err(E::from)?;
            let out = conn.write_transaction().map_err(E::from).and_then(|tx| {
                let value = f(&tx)?;
                if commit {
                    tx.commit()?;
                } else {
                    tx.rollback()?;
                }
                Ok(value)
            });
            let conflict = out.is_err() && conn.take_conflict();
            drop(turn);
            if conflict && attempt < ATTEMPTS {
                tracing::debug!(attempt, "a transaction another ran into runs again");
                continue;
            }
            if conflict {
                tracing::error!(attempt, "a transaction kept running into others; given up");
            }
            return out;
        }
    }

    fn admin_tx<T>(
        &self,
        f: impl FnMut(&Transaction<'_>) -> Result<T, TxError>,
    ) -> Result<T, AdminError> {
        self.write(f).map_err(|e| match e {
            TxError::Refused(a) => a,
            TxError::Db(source) => AdminError::Db {
                path: self.path.display().to_string(),
                source,
            },
        })
    }

    pub fn user_add(
        &self,
        domain: i64,
        username: &str,
        given_name: &str,
        surname: &str,
        email: Option<&str>,
    ) -> Result<(), AdminError> {
        validate_username(username)?;
        for (field, value) in [("--given", given_name), ("--surname", surname)] {
            validate_name_part(field, value)?;
        }
        if let Some(e) = email {
            validate_email(e)?;
        }
        self.admin_tx(|tx| {
            if user_exists(tx, domain, username)? {
                return Err(AdminError::Invalid(format!(
                    "user `{username}` already exists; to change it, remove it first"
                ))
                .into());
            }
            tx.execute(
                "INSERT INTO users (domain_id, username, id, given_name, surname, email) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![domain, username, new_id("u")?, given_name, surname, email],
            )?;
            let user = load_user(tx, domain, username)?;
            append_change(tx, domain, &ChangeBody::UserUpsert { user })?;
            Ok(())
        })
    }

    /// Suspends, unsuspends, locks or unlocks: each is a new full state of the user. `false`
    /// when the user already was in that state (nothing is appended).
    pub fn user_set(
        &self,
        domain: i64,
        username: &str,
        suspended: Option<bool>,
        locked: Option<bool>,
    ) -> Result<bool, AdminError> {
        self.admin_tx(|tx| {
            let mut user = find_user(tx, domain, username)?;
            let before = user.clone();
            user.suspended = suspended.unwrap_or(user.suspended);
            user.locked = locked.unwrap_or(user.locked);
            if user == before {
                return Ok(false);
            }
            tx.execute(
                "UPDATE users SET suspended = ?2, locked = ?3 WHERE id = ?1",
                params![user.id, user.suspended, user.locked],
            )?;
            append_change(tx, domain, &ChangeBody::UserUpsert { user })?;
            Ok(true)
        })
    }

    /// Changes a user's name parts or e-mail (`Some(None)` clears the e-mail). `false` when
    /// nothing changed.
    pub fn user_update(
        &self,
        domain: i64,
        username: &str,
        given_name: Option<&str>,
        surname: Option<&str>,
        email: Option<Option<&str>>,
    ) -> Result<bool, AdminError> {
        for (field, value) in [("--given", given_name), ("--surname", surname)] {
            if let Some(value) = value {
                validate_name_part(field, value)?;
            }
        }
        if let Some(Some(e)) = email {
            validate_email(e)?;
        }
        self.admin_tx(|tx| {
            let mut user = find_user(tx, domain, username)?;
            let before = user.clone();
            if let Some(g) = given_name {
                user.given_name = g.into();
            }
            if let Some(s) = surname {
                user.surname = s.into();
            }
            if let Some(e) = email {
                user.email = e.map(str::to_string);
            }
            if user == before {
                return Ok(false);
            }
            tx.execute(
                "UPDATE users SET given_name = ?2, surname = ?3, email = ?4 WHERE id = ?1",
                params![user.id, user.given_name, user.surname, user.email],
            )?;
            append_change(tx, domain, &ChangeBody::UserUpsert { user })?;
            Ok(true)
        })
    }

    /// Renames a user; its id, memberships and everything else stay.
    pub fn user_rename(
        &self,
        domain: i64,
        username: &str,
        new_name: &str,
    ) -> Result<(), AdminError> {
        validate_username(new_name)?;
        self.admin_tx(|tx| {
            let user = find_user(tx, domain, username)?;
            if !user.username.eq_ignore_ascii_case(new_name) && user_exists(tx, domain, new_name)? {
                return Err(
                    AdminError::Invalid(format!("user `{new_name}` already exists")).into(),
                );
            }
            tx.execute(
                "UPDATE memberships SET member = ?2 WHERE domain_id = ?3 AND member = ?1 AND member_type = 'user'",
                params![user.username, new_name, domain],
            )?;
            tx.execute(
                "UPDATE users SET username = ?2 WHERE id = ?1",
                params![user.id, new_name],
            )?;
            let user = load_user(tx, domain, new_name)?;
            append_change(tx, domain, &ChangeBody::UserUpsert { user })?;
            Ok(())
        })
    }

    /// Renames a group; its id and memberships stay.
    pub fn group_rename(&self, domain: i64, name: &str, new_name: &str) -> Result<(), AdminError> {
        validate_group_name(new_name)?;
        self.admin_tx(|tx| {
            let group = find_cloud_group(tx, domain, name)?;
            if !group.name.eq_ignore_ascii_case(new_name) && group_exists(tx, domain, new_name)? {
                return Err(
                    AdminError::Invalid(format!("group `{new_name}` already exists")).into(),
                );
            }
            tx.execute(
                "UPDATE memberships SET group_name = ?2 WHERE domain_id = ?3 AND group_name = ?1",
                params![group.name, new_name, domain],
            )?;
            tx.execute(
                "UPDATE memberships SET member = ?2 WHERE domain_id = ?3 AND member = ?1 AND member_type = 'group'",
                params![group.name, new_name, domain],
            )?;
            tx.execute(
                "UPDATE groups SET name = ?2 WHERE id = ?1",
                params![group.id, new_name],
            )?;
            let group = Group {
                id: group.id,
                name: new_name.into(),
                links: group.links,
            };
            append_change(tx, domain, &ChangeBody::GroupUpsert { group })?;
            Ok(())
        })
    }

    pub fn user_remove(&self, domain: i64, username: &str) -> Result<(), AdminError> {
        self.admin_tx(|tx| {
            let user = find_user(tx, domain, username)?;
            let username = user.username.clone();
            tx.execute(
                "DELETE FROM memberships WHERE domain_id = ?2 AND member = ?1 AND member_type = 'user'",
                params![&username, domain],
            )?;
            tx.execute("DELETE FROM users WHERE id = ?1", [&user.id])?;
            tx.execute("DELETE FROM links WHERE object_id = ?1", [&user.id])?;
            append_change(
                tx,
                domain,
                &ChangeBody::UserRemove {
                    id: user.id,
                    username,
                },
            )?;
            Ok(())
        })
    }

    /// Seals the new password to the key of every enrolled agent of the user's domain instance
    /// (no other domain's agent), bound to the user and the change (see `sealed::bind`); the
    /// password itself is never stored. Returns how many agents it was sealed for.
    pub fn set_password(
        &self,
        domain: i64,
        username: &str,
        password: &Secret,
    ) -> Result<usize, AdminError> {
        if password.expose().is_empty() {
            return Err(AdminError::Invalid(
                "--password-file: the file is empty; write the new password in it".into(),
            ));
        }
        self.admin_tx(|tx| {
            // A mirror's copy takes a password here: the cloud never has its source AD's
            // passwords, so the domain it is copied into gives it one of its own.
            let user = find_user_allowing(tx, domain, username, &["mirror"])?;
            let user_id = user.id.clone();
            let seq = append_change(
                tx,
                domain,
                &ChangeBody::UserPassword {
                    id: user.id,
                    username: user.username,
                    sealed_password: None,
                },
            )?;
            let agents: Vec<(String, Vec<u8>)> = tx
                .prepare(
                    "SELECT id, public_key FROM agents WHERE domain_id = ?1 AND deregistered_at IS NULL",
                )?
                .query_map([domain], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            for (agent_id, pk) in &agents {
                let refused = |why: String| TxError::Refused(AdminError::Invalid(why));
                let pk: [u8; 32] = pk
                    .as_slice()
                    .try_into()
                    .map_err(|_| refused(format!("agent {agent_id} has a damaged public key")))?;
                let bound = sealed::bind_password(&user_id, seq, password);
                let sealed = sealed::seal(&pk, bound.expose().as_bytes())
                    .map_err(|e| refused(e.to_string()))?;
                tx.execute(
                    "INSERT INTO password_envelopes (domain_id, seq, agent_id, sealed)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![domain, seq, agent_id, sealed],
                )?;
            }
            Ok(agents.len())
        })
    }

    pub fn group_add(&self, domain: i64, name: &str) -> Result<(), AdminError> {
        validate_group_name(name)?;
        self.admin_tx(|tx| {
            if group_exists(tx, domain, name)? {
                return Err(AdminError::Invalid(format!("group `{name}` already exists")).into());
            }
            let group = Group {
                id: new_id("g")?,
                name: name.into(),
                links: Vec::new(),
            };
            tx.execute(
                "INSERT INTO groups (domain_id, name, id) VALUES (?1, ?2, ?3)",
                params![domain, group.name, group.id],
            )?;
            append_change(tx, domain, &ChangeBody::GroupUpsert { group })?;
            Ok(())
        })
    }

    pub fn group_remove(&self, domain: i64, name: &str) -> Result<(), AdminError> {
        self.admin_tx(|tx| {
            let Group { id, name, .. } = find_cloud_group(tx, domain, name)?;
            tx.execute(
                "DELETE FROM memberships WHERE domain_id = ?2 AND (group_name = ?1 OR (member = ?1 AND member_type = 'group'))",
                params![&name, domain],
            )?;
            tx.execute("DELETE FROM groups WHERE id = ?1", [&id])?;
            tx.execute("DELETE FROM links WHERE object_id = ?1", [&id])?;
            append_change(tx, domain, &ChangeBody::GroupRemove { id, name })?;
            Ok(())
        })
    }

    /// Adds or removes a member. `kind` says whether `member` is a user or a group when a name
    /// is both; otherwise it is worked out. `false` when there was nothing to change.
    pub fn membership(
        &self,
        domain: i64,
        group: &str,
        member: &str,
        kind: Option<MemberType>,
        add: bool,
    ) -> Result<bool, AdminError> {
        self.admin_tx(|tx| {
            let group = find_cloud_group(tx, domain, group)?;
            let is_user = user_exists(tx, domain, member)?;
            let is_group = group_exists(tx, domain, member)?;
            let refuse = |why: String| Err(TxError::Refused(AdminError::Invalid(why)));
            // The stored spelling, so the change names what the agent was told about.
            let (member_id, member, member_type) = match (kind, is_user, is_group) {
                (Some(MemberType::User), true, _) | (None, true, false) => {
                    let u = find_user(tx, domain, member)?;
                    (u.id, u.username, MemberType::User)
                }
                (Some(MemberType::Group), _, true) | (None, false, true) => {
                    let g = find_group(tx, domain, member)?;
                    (g.id, g.name, MemberType::Group)
                }
                (None, true, true) => {
                    return refuse(format!(
                        "`{member}` is both a user and a group; say which with --user or --group"
                    ));
                }
                (Some(MemberType::User), false, _) => return Err(no_such_user(member).into()),
                (Some(MemberType::Group), _, false) => return Err(no_such_group(member).into()),
                (None, false, false) => {
                    return refuse(format!(
                        "no user or group is named `{member}`; add it first (user add / group add)"
                    ));
                }
            };
            if member_type == MemberType::Group && member_id == group.id {
                return refuse(format!(
                    "a group cannot be a member of itself (`{}`)",
                    group.name
                ));
            }
            if member_type == MemberType::Group && add && contains_group(tx, domain, &member, &group.name)? {
                return refuse(format!(
                    "`{member}` already contains `{}` (directly or through other groups); adding it would make a loop",
                    group.name
                ));
            }
            let sql = if add {
                "INSERT INTO memberships (domain_id, group_name, member, member_type) VALUES (?4, ?1, ?2, ?3) ON CONFLICT DO NOTHING"
            } else {
                "DELETE FROM memberships WHERE domain_id = ?4 AND group_name = ?1 AND member = ?2 AND member_type = ?3"
            };
            let changed = tx
                .execute(sql, params![group.name, member, member_type.as_str(), domain])?
                == 1;
            if changed {
                let m = Membership {
                    group_id: group.id,
                    group: group.name,
                    member_id,
                    member,
                    member_type,
                };
                let body = if add {
                    ChangeBody::MembershipAdd(m)
                } else {
                    ChangeBody::MembershipRemove(m)
                };
                append_change(tx, domain, &body)?;
            }
            Ok(changed)
        })
    }

    // ---- the agent API -----------------------------------------------------------------------
}

fn load_user(conn: &Connection, domain: i64, username: &str) -> db::Result<User> {
    conn.prepare_cached(
        "SELECT id, username, given_name, surname, email, suspended, locked, display_name FROM users WHERE domain_id = ?1 AND username = ?2",
    )?
    .query_row(
        params![domain, username],
        |r| {
            Ok(User {
                id: r.get(0)?,
                username: r.get(1)?,
                given_name: r.get(2)?,
                surname: r.get(3)?,
                email: r.get(4)?,
                suspended: r.get(5)?,
                locked: r.get(6)?,
                display_name: r.get(7)?,
                links: Vec::new(),
            })
        },
    )
    .and_then(|mut u| {
        u.links = links_of(conn, &u.id)?;
        Ok(u)
    })
}

/// The AD objects a cloud user or group is linked to, one per domain.
fn links_of(conn: &Connection, object_id: &str) -> db::Result<Vec<api::AdLink>> {
    conn.prepare_cached(
        "SELECT d.dn, l.guid FROM links l JOIN domains d ON d.id = l.domain_id
         WHERE l.object_id = ?1 ORDER BY d.dn",
    )?
    .query_map([object_id], |r| {
        Ok(api::AdLink {
            domain: r.get(0)?,
            guid: r.get(1)?,
        })
    })?
    .collect()
}

fn user_exists(conn: &Connection, domain: i64, name: &str) -> db::Result<bool> {
    conn.prepare_cached("SELECT COUNT(*) FROM users WHERE domain_id = ?1 AND username = ?2")?
        .query_row(params![domain, name], |r| r.get::<_, i64>(0))
        .map(|n| n > 0)
}

fn group_exists(conn: &Connection, domain: i64, name: &str) -> db::Result<bool> {
    conn.prepare_cached("SELECT COUNT(*) FROM groups WHERE domain_id = ?1 AND name = ?2")?
        .query_row(params![domain, name], |r| r.get::<_, i64>(0))
        .map(|n| n > 0)
}

/// Inside an admin transaction: a refusal in words, or the storage failing.
enum TxError {
    Refused(AdminError),
    Db(db::Error),
}

impl From<db::Error> for TxError {
    fn from(e: db::Error) -> Self {
        TxError::Db(e)
    }
}

impl From<AdminError> for TxError {
    fn from(e: AdminError) -> Self {
        TxError::Refused(e)
    }
}

/// A user the cloud's admin commands may change: one that exists and is the cloud's own. A user
/// that comes from AD (AD as a source) is AD's: changed in AD only, then brought here by its
/// agent.
fn find_user(conn: &Connection, domain: i64, username: &str) -> Result<User, TxError> {
    find_user_allowing(conn, domain, username, &[])
}

/// `find_user`, also taking a user whose authority is one of `also` (a mirror's copy takes a
/// password in the domain it is copied into).
fn find_user_allowing(
    conn: &Connection,
    domain: i64,
    username: &str,
    also: &[&str],
) -> Result<User, TxError> {
    let user = load_user(conn, domain, username)
        .optional()?
        .ok_or_else(|| TxError::from(no_such_user(username)))?;
    let source: String =
        conn.query_row("SELECT source FROM users WHERE id = ?1", [&user.id], |r| {
            r.get(0)
        })?;
    if also.contains(&source.as_str()) {
        return Ok(user);
    }
    if let Some(why) = not_the_clouds(conn, "users", &user.id, &source)? {
        return Err(AdminError::Invalid(format!("user `{}` {why}", user.username)).into());
    }
    Ok(user)
}

/// A group the cloud's admin commands may change (rename, remove, its members): one that
/// exists and is the cloud's own. A group that comes from AD is AD's, as its users are.
fn find_cloud_group(conn: &Connection, domain: i64, name: &str) -> Result<Group, TxError> {
    let group = find_group(conn, domain, name)?;
    let source: String = conn.query_row(
        "SELECT source FROM groups WHERE id = ?1",
        [&group.id],
        |r| r.get(0),
    )?;
    if let Some(why) = not_the_clouds(conn, "groups", &group.id, &source)? {
        return Err(AdminError::Invalid(format!("group `{}` {why}", group.name)).into());
    }
    Ok(group)
}

/// Why the cloud's admin commands may not change an object whose authority is `source`, or
/// `None` for the cloud's own: AD's (AD as a source), or another domain's AD (a mirror's copy).
fn not_the_clouds(
    conn: &Connection,
    table: &str,
    id: &str,
    source: &str,
) -> db::Result<Option<String>> {
    Ok(match source {
        "ad" => Some(
            "comes from AD, which is its authority: change it (and a group's members) in AD; its agent brings the change here".into(),
        ),
        "mirror" => {
            let from: Option<String> = conn
                .query_row(
                    &format!("SELECT d.dn FROM {table} o JOIN domains d ON d.id = o.mirror_from WHERE o.id = ?1"),
                    [id],
                    |r| r.get(0),
                )
                .optional()?;
            Some(format!(
                "is mirrored from the domain {}, whose AD is its authority: change it (and a group's members) in that domain's AD, or stop the mirror (`ad-sync-cloud domain unmirror`) to make it this cloud's; its password is this domain's own (`user set-password`)",
                from.as_deref().unwrap_or("(removed)")
            ))
        }
        _ => None,
    })
}

/// The group as stored (its stored spelling and id).
fn find_group(conn: &Connection, domain: i64, name: &str) -> Result<Group, TxError> {
    let mut g = conn
        .query_row(
            "SELECT name, id FROM groups WHERE domain_id = ?1 AND name = ?2",
            params![domain, name],
            |r| {
                Ok(Group {
                    name: r.get(0)?,
                    id: r.get(1)?,
                    links: Vec::new(),
                })
            },
        )
        .optional()?
        .ok_or_else(|| TxError::from(no_such_group(name)))?;
    g.links = links_of(conn, &g.id)?;
    Ok(g)
}

/// Whether group `outer` contains group `inner`, directly or through nested groups.
fn contains_group(conn: &Connection, domain: i64, outer: &str, inner: &str) -> db::Result<bool> {
    conn.query_row(
        "WITH RECURSIVE inside(name) AS (
             SELECT member FROM memberships WHERE domain_id = ?3 AND group_name = ?1 AND member_type = 'group'
             UNION
             SELECT m.member FROM memberships m JOIN inside i ON m.group_name = i.name
             WHERE m.domain_id = ?3 AND m.member_type = 'group')
         SELECT COUNT(*) FROM inside WHERE name = ?2 COLLATE NOCASE",
        params![outer, inner, domain],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

fn no_such_user(name: &str) -> AdminError {
    AdminError::Invalid(format!(
        "no user is named `{name}`; `ad-sync-cloud user add` creates one"
    ))
}

fn no_such_group(name: &str) -> AdminError {
    AdminError::Invalid(format!(
        "no group is named `{name}`; `ad-sync-cloud group add` creates one"
    ))
}

/// AD's sAMAccountName rules, because the agent uses the username as one.
const ACCOUNT_FORBIDDEN: &[char] = &[
    '"', '/', '\\', '[', ']', ':', ';', '|', '=', ',', '+', '*', '?', '<', '>', '@',
];

/// Characters that change how text is shown without being seen (Unicode format characters):
/// soft hyphen, zero-width spaces and joiners, direction marks and overrides, the word joiner
/// and invisible operators, the byte-order mark, Mongolian vowel separator, Arabic letter mark.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Script {
    Latin,
    Greek,
    Cyrillic,
}

fn script(c: char) -> Option<Script> {
    match c {
        'A'..='Z' | 'a'..='z' | '\u{00C0}'..='\u{024F}' | '\u{1E00}'..='\u{1EFF}' => {
            Some(Script::Latin)
        }
        '\u{0370}'..='\u{03FF}' | '\u{1F00}'..='\u{1FFF}' => Some(Script::Greek),
        '\u{0400}'..='\u{052F}' => Some(Script::Cyrillic),
        _ => None,
    }
}

/// Why a name the agent writes into AD (a logon name, a name part, a group's name) could
/// deceive or break: a control or invisible character, or letters of two look-alike scripts
/// (`аdmin` with a Cyrillic `а` reads as `admin`). `None` when it is fine.
pub fn name_problem(text: &str) -> Option<String> {
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Some(format!("contains the control character U+{:04X}", c as u32));
    }
    if let Some(c) = text.chars().find(|c| is_invisible(*c)) {
        return Some(format!(
            "contains the invisible character U+{:04X}, which would make it look like another name",
            c as u32
        ));
    }
    let mut seen: Option<Script> = None;
    for c in text.chars() {
        if let Some(sc) = script(c) {
            match seen {
                None => seen = Some(sc),
                Some(first) if first != sc => {
                    return Some(
                        "mixes letters of look-alike scripts (Latin, Greek, Cyrillic), so it can pass for another name; write it in one script".into(),
                    );
                }
                Some(_) => {}
            }
        }
    }
    None
}

pub fn validate_username(name: &str) -> Result<(), AdminError> {
    let bad = if name.is_empty() {
        Some("is empty".to_string())
    } else if name.chars().count() > 20 {
        Some("is longer than 20 characters (AD's limit for a logon name)".into())
    } else if let Some(c) = name
        .chars()
        .find(|c| ACCOUNT_FORBIDDEN.contains(c) || c.is_control() || c.is_whitespace())
    {
        Some(format!(
            "contains `{c}`, which AD does not allow in a logon name"
        ))
    } else if name.ends_with('.') {
        Some("ends with a dot, which AD does not allow".into())
    } else if name.ends_with('$') {
        Some("ends with `$`, which marks computer and trust accounts in AD".into())
    } else {
        name_problem(name)
    };
    match bad {
        Some(why) => Err(AdminError::Invalid(format!(
            "username `{}` {why}",
            name.escape_default()
        ))),
        None => Ok(()),
    }
}

fn validate_name_part(field: &str, value: &str) -> Result<(), AdminError> {
    if value.trim().is_empty() || value.chars().count() > 64 {
        return Err(AdminError::Invalid(format!(
            "{field} must be 1 to 64 characters (AD's limit for name parts)"
        )));
    }
    match name_problem(value) {
        Some(why) => Err(AdminError::Invalid(format!(
            "{field} `{}` {why}",
            value.escape_default()
        ))),
        None => Ok(()),
    }
}

fn validate_email(e: &str) -> Result<(), AdminError> {
    if !e.contains('@') || e.contains(char::is_whitespace) || e.len() > 256 {
        return Err(AdminError::Invalid(format!(
            "--email `{e}` is not an e-mail address (name@domain)"
        )));
    }
    Ok(())
}

pub fn validate_group_name(name: &str) -> Result<(), AdminError> {
    let bad = if name.trim().is_empty() {
        Some("is empty".to_string())
    } else if name.chars().count() > 64 {
        Some("is longer than 64 characters (AD's limit for a group's name)".into())
    } else if name != name.trim() {
        Some("starts or ends with a space".into())
    } else {
        name.chars()
            .find(|c| ACCOUNT_FORBIDDEN.contains(c))
            .map(|c| format!("contains `{c}`, which AD does not allow in a group's name"))
            .or_else(|| {
                name.ends_with('$').then(|| {
                    "ends with `$`, which marks computer and trust accounts in AD".to_string()
                })
            })
            .or_else(|| name_problem(name))
    };
    match bad {
        Some(why) => Err(AdminError::Invalid(format!(
            "group name `{}` {why}",
            name.escape_default()
        ))),
        None => Ok(()),
    }
}

/// For the store's tests: an agent of `domain` enrolled and heard from, so it is the domain's
/// primary, and the time it was heard from.
#[cfg(test)]
pub(crate) fn enrolled_primary(store: &Store, domain: &str) -> (AgentAuth, i64) {
    let (key, _) = store
        .issue_key(domain, Duration::from_secs(3600))
        .unwrap_or_else(|e| panic!("{e}"));
    let dn = api::parse_domain_dn(domain).unwrap_or_else(|e| panic!("{e}"));
    let t0 = ad_sync_api::time_fmt::now_unix();
    let enrolled = store
        .enroll(
            &key,
            &dn,
            "dc1",
            "0.1.0",
            "linux",
            &[7; 32],
            Timing::default(),
            t0,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
    let agent = store
        .authenticate(&enrolled.credential)
        .unwrap_or_else(|e| panic!("{e:?}"))
        .unwrap_or_else(|| panic!("no agent"));
    let hb = HeartbeatRequest {
        version: "0.1.0".into(),
        host: "dc1".into(),
        status: "ok".into(),
        message: None,
        run: None,
    };
    store
        .heartbeat(&agent, &hb, Timing::default(), t0)
        .unwrap_or_else(|e| panic!("{e:?}"));
    (agent, t0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Schema 3 as it was written (one directory for every domain instance).
    const V3_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS domains (
        id INTEGER PRIMARY KEY,
        dn TEXT NOT NULL,
        dn_key TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        primary_agent TEXT,
        acked_cursor INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE IF NOT EXISTS keys (
        id INTEGER PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        hint TEXT NOT NULL,
        domain_id INTEGER NOT NULL REFERENCES domains(id),
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at INTEGER,
        used_by TEXT
    );
    CREATE TABLE IF NOT EXISTS agents (
        id TEXT PRIMARY KEY,
        domain_id INTEGER NOT NULL REFERENCES domains(id),
        credential_hash TEXT NOT NULL UNIQUE,
        public_key BLOB NOT NULL,
        host TEXT NOT NULL,
        version TEXT NOT NULL,
        os TEXT NOT NULL,
        enrolled_at INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        status TEXT NOT NULL DEFAULT 'ok',
        message TEXT,
        deregistered_at INTEGER
    );
    CREATE TABLE IF NOT EXISTS users (
        username TEXT PRIMARY KEY COLLATE NOCASE,
        id TEXT NOT NULL UNIQUE,
        given_name TEXT NOT NULL,
        surname TEXT NOT NULL,
        email TEXT,
        suspended INTEGER NOT NULL DEFAULT 0,
        locked INTEGER NOT NULL DEFAULT 0,
        display_name TEXT
    );
    CREATE TABLE IF NOT EXISTS groups (
        name TEXT PRIMARY KEY COLLATE NOCASE,
        id TEXT NOT NULL UNIQUE
    );
    CREATE TABLE IF NOT EXISTS memberships (
        group_name TEXT NOT NULL COLLATE NOCASE,
        member TEXT NOT NULL COLLATE NOCASE,
        member_type TEXT NOT NULL,
        PRIMARY KEY (group_name, member, member_type)
    );
    CREATE TABLE IF NOT EXISTS changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS password_envelopes (
        seq INTEGER NOT NULL REFERENCES changes(seq),
        agent_id TEXT NOT NULL,
        sealed TEXT NOT NULL,
        PRIMARY KEY (seq, agent_id)
    );
    CREATE TABLE IF NOT EXISTS links (
        object_id TEXT NOT NULL,
        domain_id INTEGER NOT NULL REFERENCES domains(id),
        guid TEXT NOT NULL COLLATE NOCASE,
        agent_id TEXT NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (object_id, domain_id),
        UNIQUE (domain_id, guid)
    );
    CREATE TABLE IF NOT EXISTS acks (
        domain_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        agent_id TEXT NOT NULL,
        status TEXT NOT NULL,
        message TEXT NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (domain_id, seq)
    );
    ";

    fn v3_database(domains: &[&str]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("cloud.db");
        let conn = rusqlite::Connection::open(&path).unwrap_or_else(|e| panic!("{e}"));
        conn.execute_batch(V3_SCHEMA)
            .unwrap_or_else(|e| panic!("{e}"));
        for (i, d) in domains.iter().enumerate() {
            conn.execute(
                "INSERT INTO domains (id, dn, dn_key, created_at) VALUES (?1, ?2, lower(?2), 0)",
                rusqlite::params![i as i64 + 1, d],
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
        conn.execute_batch(
            "INSERT INTO users (username, id, given_name, surname) VALUES ('ada', 'u-1', 'Ada', 'L');
             INSERT INTO groups (name, id) VALUES ('Eng', 'g-1');
             INSERT INTO memberships (group_name, member, member_type) VALUES ('Eng', 'ada', 'user');
             INSERT INTO changes (at, body) VALUES (0, '{\"type\":\"group.upsert\",\"group\":{\"id\":\"g-1\",\"name\":\"Eng\"}}');
             INSERT INTO agents (id, domain_id, credential_hash, public_key, host, version, os, enrolled_at, last_seen)
                 VALUES ('agt-1', 1, 'h', x'00', 'dc1', '0', 'linux', 10, 20);
             PRAGMA user_version = 3;",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        (dir, path)
    }

    /// Two nodes on one database look at the agents at once: the second waits for the first
    /// to decide and record, then finds the incident open, so the alert is raised (and posted)
    /// once, not once per node.
    #[test]
    fn of_nodes_settling_alerts_at_once_one_raises_each_incident() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("cloud.db");
        let (a, b) = (
            Store::open(&path).unwrap_or_else(|e| panic!("{e}")),
            Store::open(&path).unwrap_or_else(|e| panic!("{e}")),
        );
        // Raises agent-1's silence unless it is open; says whether it raised it.
        let decide = |open: Vec<(String, String, i64)>| -> Settled<bool> {
            if open
                .iter()
                .any(|(a, k, _)| a == "agent-1" && k == "agent_silent")
            {
                (false, Vec::new(), Vec::new())
            } else {
                (
                    true,
                    vec![("agent-1".into(), "agent_silent".into(), 1)],
                    Vec::new(),
                )
            }
        };
        let (first, second) = std::thread::scope(|scope| {
            let mut other = None;
            let first = a
                .settle_alerts(|_, open| {
                    let b = &b;
                    let handle = scope.spawn(move || {
                        b.settle_alerts(|_, open| decide(open))
                            .unwrap_or_else(|e| panic!("{e}"))
                    });
                    std::thread::sleep(Duration::from_millis(300));
                    assert!(
                        !handle.is_finished(),
                        "the second node decided while the first was deciding"
                    );
                    other = Some(handle);
                    decide(open)
                })
                .unwrap_or_else(|e| panic!("{e}"));
            let second = other
                .unwrap_or_else(|| panic!("no second look"))
                .join()
                .unwrap_or_else(|_| panic!("the second node panicked"));
            (first, second)
        });
        assert_eq!((first, second), (true, false));
    }

    #[test]
    fn names_that_could_deceive_or_break_are_refused() {
        let cases: &[(&str, bool)] = &[
            ("ada", true),
            ("José", true),
            ("Ελένη", true),
            ("Дмитрий", true),
            ("аdmin", false),         // Cyrillic а with Latin letters
            ("ad\u{200B}min", false), // zero-width space
            ("ad\u{202E}nim", false), // right-to-left override
            ("ada\u{7}", false),      // control character
            ("svc-backup$", false),   // a computer account's mark
        ];
        for (name, ok) in cases {
            assert_eq!(validate_username(name).is_ok(), *ok, "username {name:?}");
            assert_eq!(validate_group_name(name).is_ok(), *ok, "group {name:?}");
        }
        assert!(validate_name_part("--given", "Ada").is_ok());
        assert!(validate_name_part("--given", "A\u{0}da").is_err());
        assert!(validate_name_part("--surname", "Lоvelace").is_err());
    }

    #[test]
    fn a_single_domain_schema_3_database_keeps_its_directory_in_its_domain() {
        let (_dir, path) = v3_database(&["DC=example,DC=com"]);
        let store = Store::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let d = store.domain_id(None).unwrap_or_else(|e| panic!("{e}"));
        let users = store.user_list(d).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].id, "u-1");
        let groups = store.group_list(d).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(groups[0].members, vec!["ada".to_string()]);
        // The old change is this domain's, and new ones follow it.
        store
            .user_add(d, "bob", "Bob", "B", None)
            .unwrap_or_else(|e| panic!("{e}"));
        let conn = store.lock();
        let domains: Vec<Option<i64>> = conn
            .prepare("SELECT domain_id FROM changes ORDER BY seq")
            .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(domains, vec![Some(d), Some(d)]);
        // An agent that had heartbeated is known to have, so its key cannot be replayed.
        let first: Option<i64> = conn
            .query_row("SELECT first_heartbeat_at FROM agents", [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first, Some(20));
    }

    #[test]
    fn several_domains_sharing_a_directory_give_it_to_the_first_one() {
        let (_dir, path) = v3_database(&["DC=example,DC=com", "DC=other,DC=org"]);
        let store = Store::open(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            store.domain_id(None).is_err(),
            "two domains: --domain is needed"
        );
        let first = store
            .domain_id(Some("dc=example;dc=com"))
            .unwrap_or_else(|e| panic!("{e}"));
        let second = store
            .domain_id(Some("DC=other,DC=org"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.user_list(first).map(|u| u.len()).ok(), Some(1));
        assert_eq!(store.user_list(second).map(|u| u.len()).ok(), Some(0));
        // The same name in the other domain is another user.
        store
            .user_add(second, "ada", "Ada", "Other", None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(store.domain_id(Some("DC=nope,DC=org")).is_err());
    }
}
