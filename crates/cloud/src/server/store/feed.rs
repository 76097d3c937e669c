//! The change feed: each domain's changes numbered 1, 2, 3... under the domain's row lock
//! (`append_change`), read by the domain's primary agent after its cursor (`changes`), and
//! acknowledged change by change (`ack`).

use super::*;

/// The feed's tables (schema 9). A change's seq is its domain's own number
/// (`append_change`): 1, 2, 3... with no gap.
pub(super) const FEED_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS changes (
    domain_id INTEGER NOT NULL REFERENCES domains(id),
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (domain_id, seq)
);
CREATE TABLE IF NOT EXISTS password_envelopes (
    domain_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    agent_id TEXT NOT NULL,
    sealed TEXT NOT NULL,
    PRIMARY KEY (domain_id, seq, agent_id),
    FOREIGN KEY (domain_id, seq) REFERENCES changes(domain_id, seq)
);
";

/// Schema 9: the changes and the password envelopes keyed by (domain, seq), and each domain's
/// last number. The numbers already given stay as they are (agents hold them as cursors); each
/// domain's next change takes the number after its last. In one transaction, the old tables
/// set aside, the new ones made and filled, and their foreign keys checked (SQLite's documented
/// way to change a table's keys).
pub(super) fn migrate_v9(conn: &Connection) -> db::Result<()> {
    conn.execute_batch(
        "PRAGMA foreign_keys = OFF;
         BEGIN IMMEDIATE;
         ALTER TABLE domains ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0;
         UPDATE domains SET last_seq =
             (SELECT COALESCE(MAX(seq), 0) FROM changes WHERE changes.domain_id = domains.id);
         DROP INDEX IF EXISTS changes_by_domain;
         ALTER TABLE password_envelopes RENAME TO password_envelopes_v8;
         ALTER TABLE changes RENAME TO changes_v8;",
    )?;
    conn.execute_batch(FEED_SCHEMA)?;
    conn.execute_batch(
        "INSERT INTO changes (domain_id, seq, at, body)
             SELECT domain_id, seq, at, body FROM changes_v8 WHERE domain_id IS NOT NULL;
         INSERT INTO password_envelopes (domain_id, seq, agent_id, sealed)
             SELECT c.domain_id, e.seq, e.agent_id, e.sealed
             FROM password_envelopes_v8 e JOIN changes_v8 c ON c.seq = e.seq
             WHERE c.domain_id IS NOT NULL;
         DROP TABLE password_envelopes_v8;
         DROP TABLE changes_v8;",
    )?;
    for table in ["changes", "password_envelopes"] {
        let broken: Option<String> = conn
            .query_row(&format!("PRAGMA foreign_key_check({table})"), [], |r| {
                r.get(0)
            })
            .optional()?;
        if broken.is_some() {
            conn.execute_batch("ROLLBACK; PRAGMA foreign_keys = ON;")?;
            return Err(db::Error::Other(
                format!("a row of {table} refers to nothing after the change to schema 9").into(),
            ));
        }
    }
    conn.execute_batch("COMMIT; PRAGMA foreign_keys = ON;")
}

/// Appends a change to the domain's feed under the next of the domain's own numbers. Taking
/// the number updates the domain's row, which locks it until the transaction ends: a second
/// writer of the same domain waits, so the numbers become visible in their order and a reader
/// that has seen 12 has seen 11 (a global sequence would let 12 commit first, and a reader move
/// past 11 before it appears). Must run inside the caller's write transaction.
pub(super) fn append_change(conn: &Connection, domain: i64, body: &ChangeBody) -> db::Result<i64> {
    let json = serde_json::to_string(body).map_err(|e| db::Error::Other(Box::new(e)))?;
    let seq: i64 = conn
        .prepare_cached(
            "UPDATE domains SET last_seq = last_seq + 1 WHERE id = ?1 RETURNING last_seq",
        )?
        .query_row([domain], |r| r.get(0))?;
    conn.prepare_cached("INSERT INTO changes (domain_id, seq, at, body) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![
            domain,
            seq,
            ad_sync_api::time_fmt::now_unix(),
            json
        ])?;
    Ok(seq)
}

impl Store {
    /// Changes after `after`, for the domain's primary agent only: two agents writing the same
    /// changes into AD would race each other.
    pub fn changes(
        &self,
        agent: &AgentAuth,
        after: i64,
        limit: i64,
    ) -> Result<ChangesResponse, ApiError> {
        let conn = self.lock();
        require_primary(&conn, agent, "applies the changes")?;
        let mut stmt = conn.prepare_cached(
            "SELECT c.seq, c.at, c.body, e.sealed FROM changes c
             LEFT JOIN password_envelopes e
                 ON e.domain_id = c.domain_id AND e.seq = c.seq AND e.agent_id = ?3
             WHERE c.domain_id = ?4 AND c.seq > ?1 ORDER BY c.seq LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(
                params![after, limit + 1, agent.agent_id, agent.domain_id],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                },
            )?
            .collect::<Result<Vec<_>, _>>()?;
        let more = rows.len() as i64 > limit;
        let mut changes = Vec::with_capacity(rows.len());
        for (seq, at, body, sealed) in rows.into_iter().take(limit as usize) {
            let mut body: ChangeBody = serde_json::from_str(&body).map_err(|e| {
                tracing::error!(seq, error = %e, "stored change does not parse");
                ApiError::new(
                    ErrorCode::Internal,
                    format!("change {seq} is damaged in the cloud's storage"),
                )
            })?;
            if let ChangeBody::UserPassword {
                sealed_password, ..
            } = &mut body
            {
                *sealed_password = sealed;
            }
            changes.push(Change {
                seq,
                at: unix_to_rfc3339(at),
                body,
            });
        }
        let cursor = changes.last().map_or(after, |c| c.seq);
        let head: i64 = conn.query_row(
            "SELECT last_seq FROM domains WHERE id = ?1",
            [agent.domain_id],
            |r| r.get(0),
        )?;
        Ok(ChangesResponse {
            changes,
            cursor,
            more,
            head: Some(head),
        })
    }

    pub fn ack(
        &self,
        agent: &AgentAuth,
        results: &[ChangeResult],
        now: i64,
    ) -> Result<AckResponse, ApiError> {
        self.write(|tx| {
        // Only the primary applies changes, so only its word is recorded: a standby (or an
        // agent that lost the role) saying "applied" would overwrite what AD really holds.
        let primary: Option<String> = tx.query_row(
            "SELECT primary_agent FROM domains WHERE id = ?1",
            [agent.domain_id],
            |r| r.get(0),
        )?;
        if primary.as_deref() != Some(agent.agent_id.as_str()) {
            tracing::warn!(agent = %agent.agent_id, "acknowledgement from a standby agent refused");
            return Err(ApiError::new(
                ErrorCode::NotPrimary,
                format!(
                    "this agent is standby; only the primary ({}) acknowledges changes; nothing was recorded",
                    primary.as_deref().unwrap_or("none yet")
                ),
            ));
        }
        let last: i64 = tx.query_row(
            "SELECT last_seq FROM domains WHERE id = ?1",
            [agent.domain_id],
            |r| r.get(0),
        )?;
        let foreign: Option<i64> = {
            let mut st = tx
                .prepare_cached("SELECT COUNT(*) FROM changes WHERE seq = ?1 AND domain_id = ?2")?;
            let mut bad = None;
            for r in results {
                if st.query_row(params![r.seq, agent.domain_id], |x| x.get::<_, i64>(0))? == 0 {
                    bad = Some(r.seq);
                    break;
                }
            }
            bad
        };
        if let Some(seq) = foreign {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "results: seq {seq} is not a change this cloud sent to this domain (its changes run up to {last}); nothing was recorded"
                ),
            ));
        }
        for r in results {
            tx.execute(
                "INSERT INTO acks (domain_id, seq, agent_id, status, message, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (domain_id, seq) DO UPDATE SET agent_id = excluded.agent_id,
                     status = excluded.status, message = excluded.message, at = excluded.at",
                params![
                    agent.domain_id,
                    r.seq,
                    agent.agent_id,
                    r.status.as_str(),
                    r.message,
                    now
                ],
            )?;
        }
        let first_open: Option<i64> = tx.query_row(
            "SELECT MIN(c.seq) FROM changes c
             LEFT JOIN acks a ON a.domain_id = ?1 AND a.seq = c.seq
             WHERE c.domain_id = ?1 AND a.seq IS NULL",
            [agent.domain_id],
            |r| r.get(0),
        )?;
        let acked_cursor = first_open.map_or(last, |s| s - 1);
        tx.execute(
            "UPDATE domains SET acked_cursor = ?2 WHERE id = ?1",
            params![agent.domain_id, acked_cursor],
        )?;
        Ok(AckResponse {
            recorded: results.len(),
            acked_cursor,
        })
        })
    }

    /// The results recorded for a domain (for tests and the admin view).
    pub fn results(&self, domain_dn: &str) -> Result<Vec<(i64, ApplyStatus, String)>, AdminError> {
        let dn = api::parse_domain_dn(domain_dn).map_err(AdminError::Invalid)?;
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT a.seq, a.status, a.message FROM acks a JOIN domains d ON d.id = a.domain_id
                 WHERE d.dn_key = ?1 ORDER BY a.seq",
            )
            .map_err(self.admin_db())?;
        stmt.query_map([api::domain_key(&dn)], |r| {
            let status: String = r.get(1)?;
            Ok((
                r.get(0)?,
                match status.as_str() {
                    "applied" => ApplyStatus::Applied,
                    "skipped" => ApplyStatus::Skipped,
                    _ => ApplyStatus::Failed,
                },
                r.get(2)?,
            ))
        })
        .and_then(|r| r.collect())
        .map_err(self.admin_db())
    }

    /// How many changes the directory log holds, over every domain.
    pub fn change_count(&self) -> Result<i64, AdminError> {
        let conn = self.lock();
        conn.query_row("SELECT COUNT(*) FROM changes", [], |r| r.get(0))
            .map_err(self.admin_db())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store with two domains and A's primary agent.
    fn two_domains(path: &Path) -> (Store, AgentAuth, i64, i64) {
        let store = Store::open(path).unwrap_or_else(|e| panic!("{e}"));
        let (a, _) = store
            .add_domain("DC=a,DC=example")
            .unwrap_or_else(|e| panic!("{e}"));
        let (b, _) = store
            .add_domain("DC=b,DC=example")
            .unwrap_or_else(|e| panic!("{e}"));
        let (agent, _) = super::super::enrolled_primary(&store, "DC=a,DC=example");
        (store, agent, a.id, b.id)
    }

    fn username(c: &Change) -> String {
        match &c.body {
            ChangeBody::UserUpsert { user } => user.username.clone(),
            other => panic!("unexpected change {other:?}"),
        }
    }

    /// Three nodes (each its own connection to the database, as three processes would be)
    /// write two domains' users at once while the agent of one reads its feed in small pages.
    /// Its feed is numbered 1, 2, 3... with no gap, and it gets every change once: none
    /// skipped, none twice. With one sequence for every domain, the other domain's changes
    /// would leave gaps in this one's numbers (and on a database with several writers, a
    /// reader could pass a number before its change is committed).
    #[test]
    fn the_feed_never_skips_or_repeats_a_change_with_several_writers() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        several_writers_and_a_reader(&dir.path().join("cloud.db"));
    }

    /// The same on PostgreSQL, where the three really write at once (SQLite's writers take
    /// turns): a number is taken under the domain's row lock, so the one that takes 12 waits
    /// until 11 is committed (or rolled back, and then it takes 11).
    #[test]
    fn on_postgres_the_feed_never_skips_or_repeats_a_change_with_several_writers() {
        several_writers_and_a_reader(&crate::test_postgres_db("feed_stress"));
    }

    fn several_writers_and_a_reader(path: &Path) {
        let path = path.to_path_buf();
        let (store, agent, a, b) = two_domains(&path);
        let start = store
            .changes(&agent, 0, 1000)
            .unwrap_or_else(|e| panic!("{e:?}"))
            .head
            .unwrap_or_default();
        const NODES: usize = 3;
        const EACH: usize = 40;
        let writing = std::sync::atomic::AtomicUsize::new(NODES);
        let read = std::thread::scope(|s| {
            for node in 0..NODES {
                let (path, writing) = (&path, &writing);
                s.spawn(move || {
                    let store = Store::open(path).unwrap_or_else(|e| panic!("{e}"));
                    for i in 0..EACH {
                        for (domain, tag) in [(a, "a"), (b, "b")] {
                            store
                                .user_add(domain, &format!("{tag}{node}x{i}"), "G", "S", None)
                                .unwrap_or_else(|e| panic!("{e}"));
                        }
                    }
                    writing.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
            let reader = s.spawn(|| {
                let store = Store::open(&path).unwrap_or_else(|e| panic!("{e}"));
                let mut cursor = start;
                let mut got = Vec::new();
                loop {
                    let done = writing.load(std::sync::atomic::Ordering::SeqCst) == 0;
                    let page = store
                        .changes(&agent, cursor, 7)
                        .unwrap_or_else(|e| panic!("{e:?}"));
                    got.extend(page.changes.iter().map(|c| (c.seq, username(c))));
                    cursor = page.cursor;
                    if done && !page.more {
                        break got;
                    }
                }
            });
            reader
                .join()
                .unwrap_or_else(|_| panic!("the reader panicked"))
        });
        let seqs: Vec<i64> = read.iter().map(|(s, _)| *s).collect();
        let want: Vec<i64> = (start + 1..=start + (NODES * EACH) as i64).collect();
        assert_eq!(seqs, want, "A's feed is not 1, 2, 3... each once");
        let mut names: Vec<&str> = read.iter().map(|(_, n)| n.as_str()).collect();
        names.sort_unstable();
        let mut written: Vec<String> = (0..NODES)
            .flat_map(|n| (0..EACH).map(move |i| format!("a{n}x{i}")))
            .collect();
        written.sort_unstable();
        assert_eq!(names, written);
        let head = |d: i64| {
            store
                .domains()
                .unwrap_or_else(|e| panic!("{e}"))
                .into_iter()
                .find(|r| r.id == d)
                .map(|r| r.last_seq)
        };
        assert_eq!(head(a), Some(start + (NODES * EACH) as i64));
        assert_eq!(head(b), Some((NODES * EACH) as i64));
    }

    /// A schema 8 database numbered every change from one sequence: its numbers stay (agents
    /// hold them as cursors), its password envelopes stay with their changes, and each domain
    /// goes on from its own last number.
    #[test]
    fn a_schema_8_feed_keeps_its_numbers_and_each_domain_goes_on_from_its_last() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("cloud.db");
        {
            let conn = rusqlite::Connection::open(&path).unwrap_or_else(|e| panic!("{e}"));
            conn.execute_batch(
                "CREATE TABLE domains (
                    id INTEGER PRIMARY KEY,
                    dn TEXT NOT NULL,
                    dn_key TEXT NOT NULL UNIQUE,
                    created_at INTEGER NOT NULL,
                    primary_agent TEXT,
                    acked_cursor INTEGER NOT NULL DEFAULT 0,
                    source_retention_days INTEGER
                );
                CREATE TABLE changes (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    at INTEGER NOT NULL,
                    body TEXT NOT NULL,
                    domain_id INTEGER
                );
                CREATE INDEX changes_by_domain ON changes(domain_id, seq);
                CREATE TABLE password_envelopes (
                    seq INTEGER NOT NULL REFERENCES changes(seq),
                    agent_id TEXT NOT NULL,
                    sealed TEXT NOT NULL,
                    PRIMARY KEY (seq, agent_id)
                );
                INSERT INTO domains (id, dn, dn_key, created_at) VALUES
                    (1, 'DC=a,DC=example', 'dc=a,dc=example', 0),
                    (2, 'DC=b,DC=example', 'dc=b,dc=example', 0);
                INSERT INTO changes (seq, at, body, domain_id) VALUES
                    (1, 0, '{\"type\":\"group.remove\",\"id\":\"g1\",\"name\":\"one\"}', 1),
                    (2, 0, '{\"type\":\"group.remove\",\"id\":\"g2\",\"name\":\"two\"}', 2),
                    (3, 0, '{\"type\":\"group.remove\",\"id\":\"g3\",\"name\":\"three\"}', 1),
                    (4, 0, '{\"type\":\"group.remove\",\"id\":\"g4\",\"name\":\"four\"}', 2),
                    (5, 0, '{\"type\":\"group.remove\",\"id\":\"g5\",\"name\":\"five\"}', 2);
                INSERT INTO password_envelopes VALUES (3, 'agent-a', 'sealed-3'), (4, 'agent-b', 'sealed-4');
                PRAGMA user_version = 8;",
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
        let store = Store::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let rows = |sql: &str| -> Vec<(i64, i64)> {
            let conn = store.lock();
            let mut st = conn.prepare(sql).unwrap_or_else(|e| panic!("{e}"));
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|r| r.collect())
                .unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(
            rows("SELECT domain_id, seq FROM changes ORDER BY seq"),
            vec![(1, 1), (2, 2), (1, 3), (2, 4), (2, 5)]
        );
        assert_eq!(
            rows("SELECT domain_id, seq FROM password_envelopes ORDER BY seq"),
            vec![(1, 3), (2, 4)]
        );
        assert_eq!(
            rows("SELECT id, last_seq FROM domains ORDER BY id"),
            vec![(1, 3), (2, 5)]
        );
        store.group_add(1, "six").unwrap_or_else(|e| panic!("{e}"));
        store
            .group_add(2, "seven")
            .unwrap_or_else(|e| panic!("{e}"));
        store
            .group_add(1, "eight")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            rows("SELECT domain_id, seq FROM changes WHERE seq > 3 ORDER BY domain_id, seq"),
            vec![(1, 4), (1, 5), (2, 4), (2, 5), (2, 6)]
        );
        let fk: Option<String> = store
            .lock()
            .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
            .optional()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fk, None);
    }
}
