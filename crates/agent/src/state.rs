//! The agent's local state: its mirror of the cloud directory, the objectGUID of each AD object
//! it manages, the cursor into the cloud's change feed, and the results not yet acknowledged to
//! the cloud. One SQLite file (WAL, synchronous=FULL); every run's outcome is written in one
//! transaction, so after a crash the state is the one before the run or the one after it.

use super::mirror::{GroupRec, Mirror, UserRec};
use ad_sync_core::cloud::api::{ApplyStatus, ChangeResult, MemberType, User};
use rusqlite::{Connection, params};
use std::path::{Path, PathBuf};

/// 2: groups keep the AD links the cloud gave them (an imported group's objectGUID).
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    password_set INTEGER NOT NULL,
    guid BLOB
);
CREATE TABLE IF NOT EXISTS groups (id TEXT PRIMARY KEY, name TEXT NOT NULL, guid BLOB, links TEXT);
CREATE TABLE IF NOT EXISTS edges (
    group_id TEXT NOT NULL,
    member_type TEXT NOT NULL,
    member_id TEXT NOT NULL,
    PRIMARY KEY (group_id, member_type, member_id)
);
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, status TEXT NOT NULL, message TEXT NOT NULL);
";

pub struct State {
    conn: Connection,
    pub path: PathBuf,
}

/// Why the state cannot be used. Each names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state {}: {source}. The agent must be able to write this file: check its folder's owner, permissions and free space, or give another folder with --state-dir", path.display())]
    Db {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("state {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state {}: written by a newer ad-sync-agent (schema {version}); run that version, or move the file away to rebuild the state from the cloud", path.display())]
    Newer { path: PathBuf, version: i64 },
    #[error("state {}: user {id} cannot be written: {source}", path.display())]
    Encode {
        path: PathBuf,
        id: String,
        source: serde_json::Error,
    },
    #[error("state {}: user {id} is damaged: {source}", path.display())]
    Damaged {
        path: PathBuf,
        id: String,
        source: serde_json::Error,
    },
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> StateError + '_ {
    move |source| StateError::Db {
        path: path.to_path_buf(),
        source,
    }
}

impl State {
    /// Opens (creating) `state.db` in `dir`, which is created private (0700) when missing.
    pub fn open(dir: &Path) -> Result<State, StateError> {
        ad_sync_core::install::fsops::create_dirs(dir, 0o700).map_err(|source| StateError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join("state.db");
        let conn = Connection::open(&path).map_err(db_err(&path))?;
        ad_sync_core::install::fsops::set_mode(&path, 0o600).map_err(|source| StateError::Io {
            path: path.clone(),
            source,
        })?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err(&path))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db_err(&path))?;
        // A small page cache: the agent idles most of the time, and memory is what it is
        // measured on (10 MB).
        conn.pragma_update(None, "cache_size", -512)
            .map_err(db_err(&path))?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(db_err(&path))?;
        if version > SCHEMA_VERSION {
            return Err(StateError::Newer { path, version });
        }
        if version == 1 {
            conn.execute_batch("ALTER TABLE groups ADD COLUMN links TEXT;")
                .map_err(db_err(&path))?;
        }
        conn.execute_batch(SCHEMA).map_err(db_err(&path))?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(db_err(&path))?;
        Ok(State { conn, path })
    }

    /// The cursor alone (what an idle agent polls with).
    pub fn cursor(&self) -> i64 {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = 'cursor'", [], |r| {
                r.get::<_, String>(0)
            })
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    pub fn load(&self) -> Result<Mirror, StateError> {
        let err = db_err(&self.path);
        let mut m = Mirror {
            cursor: self
                .conn
                .query_row("SELECT value FROM meta WHERE key = 'cursor'", [], |r| {
                    r.get::<_, String>(0)
                })
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            ..Mirror::default()
        };
        let mut stmt = self
            .conn
            .prepare("SELECT id, user, password_set, guid FROM users")
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, Option<Vec<u8>>>(3)?,
                ))
            })
            .map_err(&err)?;
        for row in rows {
            let (id, json, password_set, guid) = row.map_err(&err)?;
            let user: User = serde_json::from_str(&json).map_err(|source| StateError::Damaged {
                path: self.path.clone(),
                id: id.clone(),
                source,
            })?;
            m.users.insert(
                id,
                UserRec {
                    user,
                    password_set,
                    guid,
                },
            );
        }
        let mut stmt = self
            .conn
            .prepare("SELECT id, name, guid, links FROM groups")
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |r| {
                // Links are a hint for adoption; a damaged value reads as none.
                let links: Option<String> = r.get(3)?;
                Ok(GroupRec {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    guid: r.get(2)?,
                    links: links
                        .and_then(|l| serde_json::from_str(&l).ok())
                        .unwrap_or_default(),
                })
            })
            .map_err(&err)?;
        for row in rows {
            let g = row.map_err(&err)?;
            m.groups.insert(g.id.clone(), g);
        }
        let mut stmt = self
            .conn
            .prepare("SELECT group_id, member_type, member_id FROM edges")
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |r| {
                let t: String = r.get(1)?;
                Ok((
                    r.get::<_, String>(0)?,
                    if t == "group" {
                        MemberType::Group
                    } else {
                        MemberType::User
                    },
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(&err)?;
        for row in rows {
            m.edges.insert(row.map_err(&err)?);
        }
        Ok(m)
    }

    /// Writes a run's outcome, all in one transaction: what differs between the mirror
    /// `before` the run and `m` after it (records, objectGUIDs, removals, memberships), the
    /// cursor, and the results to acknowledge.
    pub fn commit(
        &mut self,
        before: &Mirror,
        m: &Mirror,
        results: &[ChangeResult],
    ) -> Result<(), StateError> {
        let path = self.path.clone();
        let err = db_err(&path);
        let tx = self.conn.transaction().map_err(&err)?;
        {
            let mut put_user = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO users (id, user, password_set, guid) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(&err)?;
            for (id, u) in &m.users {
                if before.users.get(id) != Some(u) {
                    let json =
                        serde_json::to_string(&u.user).map_err(|source| StateError::Encode {
                            path: path.clone(),
                            id: id.clone(),
                            source,
                        })?;
                    put_user
                        .execute(params![id, json, u.password_set, u.guid])
                        .map_err(&err)?;
                }
            }
            let mut put_group = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO groups (id, name, guid, links) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(&err)?;
            for (id, g) in &m.groups {
                if before.groups.get(id) != Some(g) {
                    let links = (!g.links.is_empty())
                        .then(|| serde_json::to_string(&g.links).unwrap_or_default());
                    put_group
                        .execute(params![id, g.name, g.guid, links])
                        .map_err(&err)?;
                }
            }
            for id in before.users.keys().filter(|id| !m.users.contains_key(*id)) {
                tx.execute("DELETE FROM users WHERE id = ?1", [id])
                    .map_err(&err)?;
            }
            for id in before
                .groups
                .keys()
                .filter(|id| !m.groups.contains_key(*id))
            {
                tx.execute("DELETE FROM groups WHERE id = ?1", [id])
                    .map_err(&err)?;
            }
            let mut add_edge = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO edges (group_id, member_type, member_id) VALUES (?1, ?2, ?3)",
                )
                .map_err(&err)?;
            for (g, t, id) in m.edges.difference(&before.edges) {
                add_edge.execute(params![g, t.as_str(), id]).map_err(&err)?;
            }
            let mut del_edge = tx
                .prepare_cached(
                    "DELETE FROM edges WHERE group_id = ?1 AND member_type = ?2 AND member_id = ?3",
                )
                .map_err(&err)?;
            for (g, t, id) in before.edges.difference(&m.edges) {
                del_edge.execute(params![g, t.as_str(), id]).map_err(&err)?;
            }
            let mut put_result = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO outbox (seq, status, message) VALUES (?1, ?2, ?3)",
                )
                .map_err(&err)?;
            for r in results {
                put_result
                    .execute(params![r.seq, r.status.as_str(), r.message])
                    .map_err(&err)?;
            }
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('cursor', ?1)",
                [m.cursor.to_string()],
            )
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)
    }

    /// Results applied to AD but not yet acknowledged to the cloud.
    pub fn outbox(&self) -> Result<Vec<ChangeResult>, StateError> {
        let err = db_err(&self.path);
        let mut stmt = self
            .conn
            .prepare("SELECT seq, status, message FROM outbox ORDER BY seq")
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |r| {
                let status: String = r.get(1)?;
                Ok(ChangeResult {
                    seq: r.get(0)?,
                    status: match status.as_str() {
                        "applied" => ApplyStatus::Applied,
                        "skipped" => ApplyStatus::Skipped,
                        _ => ApplyStatus::Failed,
                    },
                    message: r.get(2)?,
                })
            })
            .map_err(&err)?;
        rows.collect::<Result<_, _>>().map_err(&err)
    }

    pub fn acked(&mut self, upto: i64) -> Result<(), StateError> {
        let path = self.path.clone();
        self.conn
            .execute("DELETE FROM outbox WHERE seq <= ?1", [upto])
            .map(|_| ())
            .map_err(db_err(&path))
    }
}
