//! The agent's local state: its mirror of the cloud directory, the objectGUID of each AD object
//! it manages, the cursor into the cloud's change feed, and the results not yet acknowledged to
//! the cloud. One SQLite file (WAL, synchronous=FULL); every run's outcome is written in one
//! transaction, so after a crash the state is the one before the run or the one after it.

use super::mirror::{GroupRec, Mirror, UserRec};
use ad_sync_core::cloud::api::{ApplyStatus, ChangeResult, MemberType, User};
use rusqlite::{Connection, params};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// 2: groups keep the AD links the cloud gave them (an imported group's objectGUID).
/// 3: disconnections held by the deletion threshold (`held`), and the last run's summary.
/// 4: the AD objects this agent's own import linked to the cloud (`imported`): the only links
/// the planner takes as consent; the disconnections made (`disconnections`), which the
/// deletion budget counts over its window.
const SCHEMA_VERSION: i64 = 5;

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
CREATE INDEX IF NOT EXISTS edges_by_member ON edges(member_id, member_type);
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, status TEXT NOT NULL, message TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS held (key TEXT PRIMARY KEY, entry TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS imported (guid BLOB PRIMARY KEY, kind TEXT NOT NULL, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS disconnections (at INTEGER NOT NULL, key TEXT NOT NULL, action TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS disconnections_at ON disconnections(at);
CREATE TABLE IF NOT EXISTS held_exports (key TEXT PRIMARY KEY, entry TEXT NOT NULL);
";

/// The `disconnections` action of a suspension sent to the cloud (AD as a source): counted by
/// its own budget (`export_spent`), not the cloud → AD direction's.
const EXPORT_SUSPEND: &str = "export-suspend";

/// How long the record of disconnections made is kept (the budget's window is at most this).
const DISCONNECTIONS_KEPT_SECONDS: i64 = 31 * 24 * 3600;

/// What a held disconnection is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeldKind {
    User,
    Group,
    /// A user AD is the source of, deleted there or out of the scope: its suspension in the
    /// cloud is held (AD as a source). Kept in `held_exports`, keyed by its objectGUID.
    #[serde(rename = "ad_user")]
    AdUser,
    /// A group AD is the source of, deleted there or out of the scope: marking it deleted in
    /// the cloud is held, as for `AdUser`.
    #[serde(rename = "ad_group")]
    AdGroup,
    /// A contact AD is the source of, deleted there or out of the scope: marking it deleted
    /// in the cloud is held, as for `AdUser`.
    #[serde(rename = "ad_contact")]
    AdContact,
}

impl std::fmt::Display for HeldKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HeldKind::User => "user",
            HeldKind::Group => "group",
            HeldKind::AdUser => "AD user",
            HeldKind::AdGroup => "AD group",
            HeldKind::AdContact => "AD contact",
        })
    }
}

/// A disconnection the deletion budget holds back, kept until it is approved and done, or
/// the cloud object comes back (for a suspension: until the cloud lifts it). It carries the
/// record of the object as the agent knew it (the cloud has forgotten a removed one), so a
/// later run can still find its AD object. One typed record from the planner (`HeldJob`) to
/// the state to `pending`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Held {
    /// The cloud object's id: what the administrator approves.
    pub id: String,
    pub kind: HeldKind,
    pub name: String,
    pub dn: String,
    pub action: crate::plan::Action,
    /// What would be done, in words.
    pub what: String,
    /// Why it is to be done: removed in the cloud, or an orphan.
    pub why: String,
    /// When it was first held (Unix seconds).
    pub since: i64,
    pub approved: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserRec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupRec>,
}

impl Held {
    pub fn key(&self) -> crate::mirror::ObjKey {
        match self.kind {
            HeldKind::Group | HeldKind::AdGroup => crate::mirror::ObjKey::Group(self.id.clone()),
            // A contact's id is never a user's or a group's (`c-`): nothing in the cloud -> AD
            // mirror has it.
            HeldKind::User | HeldKind::AdUser | HeldKind::AdContact => {
                crate::mirror::ObjKey::User(self.id.clone())
            }
        }
    }
}

/// What the administrator reviewed before `--approve-all`: the count of held disconnections,
/// or the digest `pending` printed (`digest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    Count(usize),
    Digest(String),
}

impl std::str::FromStr for Expect {
    type Err = String;
    fn from_str(s: &str) -> Result<Expect, String> {
        let s = s.trim();
        if let Ok(n) = s.parse::<usize>() {
            return Ok(Expect::Count(n));
        }
        if s.len() >= 8 && s.len() <= 64 && s.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(Expect::Digest(s.to_ascii_lowercase()));
        }
        Err(format!(
            "`{s}` is neither a count nor a digest; give the count or the digest `pending` printed"
        ))
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Count(n) => write!(f, "{n}"),
            Expect::Digest(d) => f.write_str(d),
        }
    }
}

impl Expect {
    /// Whether the held list is the one reviewed. A count is honoured only when the list
    /// has that many; a digest names the list itself (a prefix of at least 8 digits).
    pub fn matches(&self, held: &[Held]) -> bool {
        match self {
            Expect::Count(n) => *n == held.len(),
            Expect::Digest(d) => digest_full(held).starts_with(d.as_str()),
        }
    }
}

fn digest_full(held: &[Held]) -> String {
    use sha2::{Digest, Sha256};
    let mut lines: Vec<String> = held
        .iter()
        .map(|h| format!("{}:{}:{}:{}", h.kind, h.id, h.action, h.dn))
        .collect();
    lines.sort();
    let d = Sha256::digest(lines.join("\n").as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The state's schema version; one newer than this agent knows is refused.
fn schema_version(conn: &Connection, path: &Path) -> Result<i64, StateError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(db_err(path))?;
    if version > SCHEMA_VERSION {
        return Err(StateError::Newer {
            path: path.to_path_buf(),
            version,
        });
    }
    Ok(version)
}

/// The held list's digest as `pending` prints it (12 hex digits of SHA-256 over each held
/// disconnection's kind, id, action and DN, sorted).
pub fn digest(held: &[Held]) -> String {
    digest_full(held)[..12].to_string()
}

/// The last run, for `pending`, the heartbeat and the cloud's status.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LastRun {
    /// Unix seconds.
    pub at: i64,
    /// Disconnections held by the threshold after it.
    pub held: usize,
    /// Changes it failed.
    pub failed: usize,
    /// The last run that held nothing and failed nothing (Unix seconds; 0: none yet).
    pub last_success: i64,
    /// The changes it failed, with their reasons (the first `MAX_FAILURES_KEPT`).
    #[serde(default)]
    pub failures: Vec<RunFailure>,
}

/// A change a run failed, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunFailure {
    /// The change's sequence number in the cloud's feed.
    pub seq: i64,
    pub reason: String,
}

/// How many failed changes a run keeps with their reasons (the count is always whole).
pub const MAX_FAILURES_KEPT: usize = 50;

/// The agent's last call to the cloud, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Contact {
    /// Unix seconds.
    pub at: i64,
    pub answered: bool,
    /// primary | standby, when it answered.
    pub role: Option<String>,
    pub error: Option<String>,
}

pub use ad_sync_core::status::ExportRecord;

/// The record of an export that started at `at` and ended with `r`; `before` is the previous
/// record (its last success is kept when this one failed).
pub fn export_record(
    at: i64,
    r: &Result<crate::export::ExportReport, String>,
    before: Option<&ExportRecord>,
) -> ExportRecord {
    match r {
        Ok(rep) => ExportRecord {
            at,
            last_success: at,
            full: rep.full,
            changed: rep.changed,
            created: rep.created,
            updated: rep.updated,
            suspended: rep.suspended,
            restored: rep.restored,
            refused: rep.refused.iter().take(20).cloned().collect(),
            refused_total: rep.refused.len(),
            error: None,
            reader: match rep.reader {
                crate::export::Reader::Dirsync => "dirsync",
                crate::export::Reader::Usn => "usn",
            }
            .into(),
            fallback: rep.fallback.clone(),
        },
        Err(e) => ExportRecord {
            at,
            last_success: before.map_or(0, |b| b.last_success),
            error: Some(e.clone()),
            ..ExportRecord::default()
        },
    }
}

/// The last full reconciliation of AD as a source: when, and for which scope and map.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reconciled {
    pub at: i64,
    pub fingerprint: String,
}

pub struct State {
    conn: Connection,
    pub path: PathBuf,
    binding: Option<Binding>,
}

/// The enrollment a state belongs to: the agent's credential (a fingerprint: a reinstall gets
/// a new one), the cloud and the AD domain. A state of another enrollment (an older install, a
/// rebuilt cloud) is never used: it is set aside and the agent starts empty.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Binding {
    /// SHA-256 of the agent's credential, hex, first 32 characters.
    pub credential: String,
    pub cloud: String,
    pub domain: String,
}

impl Binding {
    pub fn new(credential: &ad_sync_core::secret::Secret, cloud: &str, domain: &str) -> Binding {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(credential.expose().as_bytes());
        Binding {
            credential: digest.iter().take(16).map(|b| format!("{b:02x}")).collect(),
            cloud: cloud.trim_end_matches('/').to_ascii_lowercase(),
            domain: domain.to_ascii_lowercase(),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "the enrollment with credential {}… at {} for {}",
            &self.credential[..8.min(self.credential.len())],
            self.cloud,
            self.domain
        )
    }
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
    #[error("not held: {}. `ad-sync-agent pending --config FILE` lists the ids that can be approved", ids.join(", "))]
    NotHeld { ids: Vec<String> },
    #[error(
        "--approve-all needs --expect with the count or the digest `pending` printed for the list you reviewed (now {count} held, digest {digest}); run `ad-sync-agent pending --config FILE`, read the list, then `--approve-all --expect {digest}`"
    )]
    Unreviewed { count: usize, digest: String },
    #[error(
        "the held list changed since it was reviewed (--expect {expected}; now {count} held, digest {digest}): nothing was approved. Run `ad-sync-agent pending --config FILE` again and review the list"
    )]
    Changed {
        expected: String,
        count: usize,
        digest: String,
    },
}

/// The cycle lock: the service's cycle and `pending`'s approval never run at the same time on
/// one state (an approval read while a cycle rewrites the held table would be stale). An
/// advisory lock on `state.lock` beside `state.db` (flock on Linux, LockFileEx on Windows),
/// released when dropped or when the process ends, however it ends.
pub struct CycleLock {
    _file: std::fs::File,
}

impl CycleLock {
    /// Takes the lock, waiting up to `wait` for whoever holds it. `Ok(None)`: still held
    /// by another process after `wait`.
    pub async fn acquire(
        dir: &Path,
        wait: std::time::Duration,
    ) -> Result<Option<CycleLock>, StateError> {
        let path = dir.join("state.lock");
        let io = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        ad_sync_core::install::fsops::create_dirs(dir, 0o700).map_err(io)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        let deadline = std::time::Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(CycleLock { _file: file })),
                Err(std::fs::TryLockError::WouldBlock) => {
                    if std::time::Instant::now() >= deadline {
                        return Ok(None);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
            }
        }
    }
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> StateError + '_ {
    move |source| StateError::Db {
        path: path.to_path_buf(),
        source,
    }
}

impl State {
    /// Opens the state of this enrollment in `dir`. A state that belongs to another one (or to
    /// no recorded one, from before states were bound, when it holds anything) is set aside
    /// (renamed `state.db.set-aside-<time>`, never deleted) and an empty state is started; the
    /// note says so, for the log and the heartbeat.
    pub fn open_bound(
        dir: &Path,
        binding: &Binding,
    ) -> Result<(State, Option<String>), StateError> {
        let mut state = State::open(dir)?;
        state.binding = Some(binding.clone());
        let recorded: Option<Binding> = state
            .meta("enrollment")
            .and_then(|v| serde_json::from_str(&v).ok());
        let note = match recorded {
            Some(b) if &b == binding => None,
            Some(b) => Some(state.set_aside(&format!(
                "it belongs to {}, not to this agent's ({})",
                b.describe(),
                binding.describe()
            ))?),
            None if state.is_empty()? => None,
            None => Some(state.set_aside(
                "it records no enrollment (it was written before states were bound to one), so it may be an older install's",
            )?),
        };
        state.bind()?;
        Ok((state, note))
    }

    fn meta(&self, key: &str) -> Option<String> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .ok()
    }

    fn bind(&self) -> Result<(), StateError> {
        if let Some(b) = &self.binding {
            let json = serde_json::to_string(b).unwrap_or_default();
            self.conn
                .execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('enrollment', ?1)",
                    [json],
                )
                .map_err(db_err(&self.path))?;
        }
        Ok(())
    }

    fn is_empty(&self) -> Result<bool, StateError> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM users) + (SELECT COUNT(*) FROM groups)
                      + (SELECT COUNT(*) FROM outbox)",
                [],
                |r| r.get(0),
            )
            .map_err(db_err(&self.path))?;
        Ok(n == 0 && self.cursor() == 0)
    }

    /// Renames the state file (and its WAL) aside and starts an empty one in its place, bound
    /// to this enrollment. Returns what to tell the administrator.
    pub fn set_aside(&mut self, why: &str) -> Result<String, StateError> {
        let aside = aside_name(&self.path, ad_sync_core::time_fmt::now_unix());
        // Close the file first (a WAL is checkpointed on close), then move it.
        let placeholder = Connection::open_in_memory().map_err(db_err(&self.path))?;
        drop(std::mem::replace(&mut self.conn, placeholder));
        let io = |source| StateError::Io {
            path: self.path.clone(),
            source,
        };
        std::fs::rename(&self.path, &aside).map_err(io)?;
        for suffix in ["-wal", "-shm"] {
            let side = PathBuf::from(format!("{}{suffix}", self.path.display()));
            if side.exists() {
                let _ = std::fs::rename(&side, format!("{}{suffix}", aside.display()));
            }
        }
        let dir = self
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let fresh = State::open(&dir)?;
        self.conn = fresh.conn;
        self.bind()?;
        Ok(format!(
            "the state {} was not used: {why}. It was set aside as {} (nothing deleted), and this agent starts from an empty state: it replays the cloud's changes and recognises the AD objects it manages by their marker",
            self.path.display(),
            aside.display()
        ))
    }

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
        // `import` and `pending` may write while the service runs a cycle: wait for its
        // transaction rather than fail.
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(db_err(&path))?;
        // A small page cache: the agent idles most of the time, and memory is what it is
        // measured on (10 MB).
        conn.pragma_update(None, "cache_size", -512)
            .map_err(db_err(&path))?;
        let version = schema_version(&conn, &path)?;
        if version == 1 {
            conn.execute_batch("ALTER TABLE groups ADD COLUMN links TEXT;")
                .map_err(db_err(&path))?;
        }
        conn.execute_batch(SCHEMA).map_err(db_err(&path))?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(db_err(&path))?;
        Ok(State {
            conn,
            path,
            binding: None,
        })
    }

    /// The folder the state lives in (where its lock is).
    pub fn dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
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

    /// The whole mirror (a full comparison with AD needs every object).
    pub fn load(&self) -> Result<Mirror, StateError> {
        let mut m = Mirror {
            cursor: self.cursor(),
            ..Mirror::default()
        };
        self.each_user(
            "SELECT id, user, password_set, guid FROM users",
            [],
            |id, rec| {
                m.users.insert(id, rec);
            },
        )?;
        self.load_groups(&mut m)?;
        self.each_edge(
            "SELECT group_id, member_type, member_id FROM edges WHERE member_type = 'user'",
            [],
            |e| {
                m.edges.insert(e);
            },
        )?;
        Ok(m)
    }

    /// The mirror for one run of changes: what `needs` names and nothing else of the users,
    /// so that a run's memory follows the run and not the directory (see `Mirror`). Loaded:
    /// every group and every nesting; the users named; each named user's memberships; and the
    /// members of every group whose AD members the run compares whole: those `needs.whole`
    /// names and the named groups not in AD yet, every group containing one of them at any
    /// depth (removing a group changes its parents; in `match` mode a nested group's users are
    /// direct members of every group above it), and every group nested in any of those (whose
    /// users a `match` group has). The rest of the
    /// managed objects are in `others` by objectGUID. Planning on it gives the plan that the
    /// whole mirror gives (tested: `a_run_planned_on_what_it_needs_is_planned_as_on_the_whole`).
    pub fn load_for(&self, needs: &crate::mirror::Needs) -> Result<Mirror, StateError> {
        let err = db_err(&self.path);
        let mut m = Mirror {
            cursor: self.cursor(),
            ..Mirror::default()
        };
        self.load_groups(&mut m)?;
        // Up from the named groups, then down from all of those.
        let parents = |g: &str| -> Vec<String> {
            m.edges
                .iter()
                .filter(|(_, t, c)| *t == MemberType::Group && c == g)
                .map(|(p, _, _)| p.clone())
                .collect()
        };
        // Compared whole: those `needs` says, and a named group not in AD yet (`Mirror::fold`
        // gives it all its members). A group only a membership change names needs only the
        // members named, which are loaded as named users with their memberships.
        let mut groups: BTreeSet<String> = BTreeSet::new();
        let mut todo: Vec<String> = needs
            .groups
            .iter()
            .filter(|g| {
                needs.whole.contains(*g) || m.groups.get(*g).is_none_or(|r| r.guid.is_none())
            })
            .cloned()
            .collect();
        while let Some(g) = todo.pop() {
            if groups.insert(g.clone()) {
                todo.extend(parents(&g));
            }
        }
        let mut todo: Vec<String> = groups.iter().cloned().collect();
        while let Some(g) = todo.pop() {
            let children: Vec<String> = m
                .edges
                .range((g.clone(), MemberType::Group, String::new())..)
                .take_while(|(p, _, _)| *p == g)
                .filter(|(_, t, _)| *t == MemberType::Group)
                .map(|(_, _, c)| c.clone())
                .collect();
            for c in children {
                if groups.insert(c.clone()) {
                    todo.push(c);
                }
            }
        }
        let mut users = needs.users.clone();
        for g in &groups {
            self.each_edge(
                "SELECT group_id, member_type, member_id FROM edges WHERE group_id = ?1 AND member_type = 'user'",
                [g],
                |e| {
                    users.insert(e.2.clone());
                    m.edges.insert(e);
                },
            )?;
        }
        for u in &needs.users {
            self.each_edge(
                "SELECT group_id, member_type, member_id FROM edges WHERE member_id = ?1 AND member_type = 'user'",
                [u],
                |e| {
                    m.edges.insert(e);
                },
            )?;
        }
        for id in &users {
            self.each_user(
                "SELECT id, user, password_set, guid FROM users WHERE id = ?1",
                [id],
                |id, rec| {
                    m.users.insert(id, rec);
                },
            )?;
        }
        let mut stmt = self
            .conn
            .prepare("SELECT id, guid FROM users WHERE guid IS NOT NULL")
            .map_err(&err)?;
        let mut rows = stmt.query([]).map_err(&err)?;
        while let Some(row) = rows.next().map_err(&err)? {
            let id: String = row.get(0).map_err(&err)?;
            let guid: Vec<u8> = row.get(1).map_err(&err)?;
            if !m.users.contains_key(&id)
                && let Ok(g) = <[u8; 16]>::try_from(guid.as_slice())
            {
                m.others.insert(g);
            }
        }
        Ok(m)
    }

    /// The ids of the users after `after`, in order, at most `limit`: a full comparison goes
    /// through the directory a page at a time.
    pub fn users_after(&self, after: &str, limit: usize) -> Result<Vec<String>, StateError> {
        let err = db_err(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM users WHERE id > ?1 ORDER BY id LIMIT ?2")
            .map_err(&err)?;
        let rows = stmt
            .query_map(params![after, limit as i64], |r| r.get::<_, String>(0))
            .map_err(&err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(&err)
    }

    /// The next groups after `after`, in order, for one pass of a full comparison: as many as
    /// hold about `members` users between them (a pass loads its groups' members), at least
    /// one.
    pub fn group_page(&self, after: &str, members: usize) -> Result<Vec<String>, StateError> {
        let err = db_err(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT g.id, (SELECT COUNT(*) FROM edges e WHERE e.group_id = g.id AND e.member_type = 'user') \
                 FROM groups g WHERE g.id > ?1 ORDER BY g.id",
            )
            .map_err(&err)?;
        let mut rows = stmt.query([after]).map_err(&err)?;
        let (mut out, mut held) = (Vec::new(), 0usize);
        while let Some(row) = rows.next().map_err(&err)? {
            let n: i64 = row.get(1).map_err(&err)?;
            out.push(row.get::<_, String>(0).map_err(&err)?);
            held += usize::try_from(n).unwrap_or(0).max(1);
            if held >= members {
                break;
            }
        }
        Ok(out)
    }

    /// Whether the mirror has this cloud user (`group`: group).
    pub fn knows(&self, group: bool, id: &str) -> Result<bool, StateError> {
        let err = db_err(&self.path);
        let sql = if group {
            "SELECT 1 FROM groups WHERE id = ?1"
        } else {
            "SELECT 1 FROM users WHERE id = ?1"
        };
        let mut stmt = self.conn.prepare_cached(sql).map_err(&err)?;
        stmt.exists([id]).map_err(&err)
    }

    /// Every group and every nesting (a directory has few groups next to its users).
    fn load_groups(&self, m: &mut Mirror) -> Result<(), StateError> {
        let err = db_err(&self.path);
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
        self.each_edge(
            "SELECT group_id, member_type, member_id FROM edges WHERE member_type = 'group'",
            [],
            |e| {
                m.edges.insert(e);
            },
        )
    }

    fn each_user<P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        mut f: impl FnMut(String, UserRec),
    ) -> Result<(), StateError> {
        let err = db_err(&self.path);
        let mut stmt = self.conn.prepare_cached(sql).map_err(&err)?;
        let rows = stmt
            .query_map(params, |r| {
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
            f(
                id,
                UserRec {
                    user,
                    password_set,
                    guid,
                },
            );
        }
        Ok(())
    }

    fn each_edge<P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        mut f: impl FnMut(crate::mirror::Edge),
    ) -> Result<(), StateError> {
        let err = db_err(&self.path);
        let mut stmt = self.conn.prepare_cached(sql).map_err(&err)?;
        let rows = stmt
            .query_map(params, |r| {
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
            f(row.map_err(&err)?);
        }
        Ok(())
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
        self.commit_with(before, m, results, None, &[])
    }

    /// As `commit`, and when `held` is given, the held disconnections replaced by it in the same
    /// transaction (a removal leaves the mirror only together with its hold).
    /// `disconnected`: the disconnections this run made, recorded for the budget.
    pub fn commit_with(
        &mut self,
        before: &Mirror,
        m: &Mirror,
        results: &[ChangeResult],
        held: Option<&[Held]>,
        disconnected: &[(crate::mirror::ObjKey, crate::plan::Action)],
    ) -> Result<(), StateError> {
        let path = self.path.clone();
        let err = db_err(&path);
        let tx = self.conn.transaction().map_err(&err)?;
        if !disconnected.is_empty() {
            let now = ad_sync_core::time_fmt::now_unix();
            let mut put = tx
                .prepare_cached("INSERT INTO disconnections (at, key, action) VALUES (?1, ?2, ?3)")
                .map_err(&err)?;
            for (key, action) in disconnected {
                put.execute(params![now, key.to_string(), action.as_str()])
                    .map_err(&err)?;
            }
            tx.execute(
                "DELETE FROM disconnections WHERE at < ?1",
                [now - DISCONNECTIONS_KEPT_SECONDS],
            )
            .map_err(&err)?;
        }
        if let Some(held) = held {
            tx.execute("DELETE FROM held", []).map_err(&err)?;
            let mut put = tx
                .prepare_cached("INSERT OR REPLACE INTO held (key, entry) VALUES (?1, ?2)")
                .map_err(&err)?;
            for h in held {
                let entry = serde_json::to_string(h).map_err(|source| StateError::Encode {
                    path: path.clone(),
                    id: h.id.clone(),
                    source,
                })?;
                put.execute(params![format!("{}:{}", h.kind, h.id), entry])
                    .map_err(&err)?;
            }
        }
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

    /// The disconnections the threshold holds, oldest first.
    pub fn held(&self) -> Result<Vec<Held>, StateError> {
        Ok(self
            .held_in("held", "held disconnection")?
            .into_iter()
            .map(|(_, h)| h)
            .collect())
    }

    /// A held list (`held` or `held_exports`: never input) by key, oldest first.
    fn held_in(&self, table: &str, what: &str) -> Result<Vec<(String, Held)>, StateError> {
        let err = db_err(&self.path);
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT key, entry FROM {table}"))
            .map_err(&err)?;
        let rows: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(&err)?
            .collect::<Result<_, _>>()
            .map_err(&err)?;
        let mut out = Vec::new();
        for (key, entry) in rows {
            let h: Held = serde_json::from_str(&entry).map_err(|source| StateError::Damaged {
                path: self.path.clone(),
                id: format!("{what} {key}"),
                source,
            })?;
            out.push((key, h));
        }
        out.sort_by(|a, b| (a.1.since, &a.1.id).cmp(&(b.1.since, &b.1.id)));
        Ok(out)
    }

    /// Marks held disconnections approved, in one transaction: `ids` (cloud ids), or all with
    /// `None`, which needs `expect`: the count or the digest `pending` printed for the list the
    /// administrator read (`digest`), so a list that changed since is never approved blind.
    /// Returns the ids approved; an id that is not held is an error naming it, and nothing is
    /// approved. The caller holds the cycle lock.
    pub fn approve(
        &mut self,
        ids: Option<&[String]>,
        expect: Option<&Expect>,
    ) -> Result<Vec<String>, StateError> {
        let path = self.path.clone();
        let err = db_err(&path);
        let tx = self.conn.transaction().map_err(&err)?;
        // Both directions' held lists: the cloud → AD planner's and AD as a source's.
        let rows: Vec<(String, String, String)> = {
            let mut stmt = tx
                .prepare("SELECT 'held', key, entry FROM held UNION ALL SELECT 'held_exports', key, entry FROM held_exports")
                .map_err(&err)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(&err)?;
            rows.collect::<Result<_, _>>().map_err(&err)?
        };
        let mut held = Vec::new();
        for (table, key, entry) in rows {
            let h: Held = serde_json::from_str(&entry).map_err(|source| StateError::Damaged {
                path: path.clone(),
                id: format!("held disconnection {key}"),
                source,
            })?;
            held.push(((table, key), h));
        }
        let all: Vec<Held> = held.iter().map(|(_, h)| h.clone()).collect();
        match (ids, expect) {
            (Some(ids), _) => {
                let unknown: Vec<String> = ids
                    .iter()
                    .filter(|id| !all.iter().any(|h| &h.id == *id))
                    .cloned()
                    .collect();
                if !unknown.is_empty() {
                    return Err(StateError::NotHeld { ids: unknown });
                }
            }
            (None, None) => {
                return Err(StateError::Unreviewed {
                    count: all.len(),
                    digest: digest(&all),
                });
            }
            (None, Some(e)) if !e.matches(&all) => {
                return Err(StateError::Changed {
                    expected: e.to_string(),
                    count: all.len(),
                    digest: digest(&all),
                });
            }
            (None, Some(_)) => {}
        }
        let mut approved = Vec::new();
        for ((table, key), mut h) in held {
            if ids.is_none_or(|ids| ids.contains(&h.id)) {
                h.approved = true;
                approved.push(h.id.clone());
                let entry = serde_json::to_string(&h).map_err(|source| StateError::Encode {
                    path: path.clone(),
                    id: h.id.clone(),
                    source,
                })?;
                // `table` is one of the two names above, never input.
                tx.execute(
                    &format!("UPDATE {table} SET entry = ?2 WHERE key = ?1"),
                    params![key, entry],
                )
                .map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)?;
        Ok(approved)
    }

    /// Disconnections made since `since` (Unix seconds): what the budget has spent.
    pub fn spent(&self, since: i64) -> Result<usize, StateError> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM disconnections WHERE at >= ?1 AND action != ?2",
                params![since, EXPORT_SUSPEND],
                |r| r.get(0),
            )
            .map_err(db_err(&self.path))?;
        Ok(n.max(0) as usize)
    }

    /// AD as a source's held suspensions, by objectGUID, oldest first.
    pub fn held_exports(&self) -> Result<Vec<(String, Held)>, StateError> {
        self.held_in("held_exports", "held suspension")
    }

    /// Both directions' held lists (what `pending` and `status` show).
    pub fn held_all(&self) -> Result<Vec<Held>, StateError> {
        let mut all = self.held()?;
        all.extend(self.held_exports()?.into_iter().map(|(_, h)| h));
        Ok(all)
    }

    /// Holds these suspensions (objectGUID, record); one already held keeps its `since` and
    /// its approval.
    pub fn hold_exports(&mut self, items: &[(String, Held)]) -> Result<(), StateError> {
        let path = self.path.clone();
        let err = db_err(&path);
        let known: std::collections::HashMap<String, Held> =
            self.held_exports()?.into_iter().collect();
        let tx = self.conn.transaction().map_err(&err)?;
        for (guid, h) in items {
            let mut h = h.clone();
            if let Some(before) = known.get(guid) {
                h.since = before.since;
                h.approved = before.approved;
            }
            let entry = serde_json::to_string(&h).map_err(|source| StateError::Encode {
                path: path.clone(),
                id: h.id.clone(),
                source,
            })?;
            tx.execute(
                "INSERT OR REPLACE INTO held_exports (key, entry) VALUES (?1, ?2)",
                params![guid, entry],
            )
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)
    }

    /// Forgets held suspensions: sent (approved), or the user is back in the scope.
    pub fn release_exports(&mut self, guids: &[String]) -> Result<(), StateError> {
        let path = self.path.clone();
        let err = db_err(&path);
        let tx = self.conn.transaction().map_err(&err)?;
        for g in guids {
            tx.execute("DELETE FROM held_exports WHERE key = ?1", [g])
                .map_err(&err)?;
        }
        tx.commit().map_err(&err)
    }

    /// Records suspensions sent to the cloud now (what the export's budget counts).
    pub fn record_export_suspensions(&mut self, guids: &[String]) -> Result<(), StateError> {
        let path = self.path.clone();
        let err = db_err(&path);
        let now = ad_sync_core::time_fmt::now_unix();
        let tx = self.conn.transaction().map_err(&err)?;
        for g in guids {
            tx.execute(
                "INSERT INTO disconnections (at, key, action) VALUES (?1, ?2, ?3)",
                params![now, format!("ad-user:{g}"), EXPORT_SUSPEND],
            )
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)
    }

    /// Suspensions sent to the cloud since `since` (Unix seconds).
    pub fn export_spent(&self, since: i64) -> Result<usize, StateError> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM disconnections WHERE at >= ?1 AND action = ?2",
                params![since, EXPORT_SUSPEND],
                |r| r.get(0),
            )
            .map_err(db_err(&self.path))?;
        Ok(n.max(0) as usize)
    }

    /// Records the AD objects (objectGUID, "user" or "group") this agent's import linked to the
    /// cloud at `at` (Unix seconds): the links the planner honours without adoption being on.
    pub fn record_imported(
        &mut self,
        items: &[(Vec<u8>, &str)],
        at: i64,
    ) -> Result<(), StateError> {
        let path = self.path.clone();
        let err = db_err(&path);
        let tx = self.conn.transaction().map_err(&err)?;
        {
            let mut put = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO imported (guid, kind, at) VALUES (?1, ?2, ?3)",
                )
                .map_err(&err)?;
            for (guid, kind) in items {
                put.execute(params![guid, kind, at]).map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)
    }

    /// The objectGUIDs this agent's own import linked (see `record_imported`).
    pub fn imported(&self) -> Result<std::collections::HashSet<Vec<u8>>, StateError> {
        let err = db_err(&self.path);
        let mut stmt = self
            .conn
            .prepare("SELECT guid FROM imported")
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .map_err(&err)?;
        rows.collect::<Result<_, _>>().map_err(&err)
    }

    /// Whether any held disconnection is approved (a run then has work even with no change).
    pub fn has_approved(&self) -> Result<bool, StateError> {
        Ok(self.held()?.iter().any(|h| h.approved))
    }

    pub fn last_run(&self) -> LastRun {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = 'last_run'", [], |r| {
                r.get::<_, String>(0)
            })
            .ok()
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default()
    }

    /// Records a run that finished: when, how many disconnections it left held and how many
    /// changes it failed; a run with neither is the last success.
    pub fn record_run(
        &mut self,
        at: i64,
        held: usize,
        failed: usize,
        failures: Vec<RunFailure>,
    ) -> Result<LastRun, StateError> {
        let previous = self.last_run();
        let run = LastRun {
            at,
            held,
            failed,
            failures: failures.into_iter().take(MAX_FAILURES_KEPT).collect(),
            last_success: if held == 0 && failed == 0 {
                at
            } else {
                previous.last_success
            },
        };
        let path = self.path.clone();
        self.conn
            .execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_run', ?1)",
                [serde_json::to_string(&run).unwrap_or_default()],
            )
            .map_err(db_err(&path))?;
        Ok(run)
    }

    /// Records the agent's last call to the cloud.
    pub fn record_contact(&mut self, contact: &Contact) -> Result<(), StateError> {
        self.set_json("cloud_contact", contact)
    }

    pub fn contact(&self) -> Option<Contact> {
        self.json("cloud_contact")
    }

    pub fn record_export(&mut self, record: &ExportRecord) -> Result<(), StateError> {
        self.set_json("last_export", record)
    }

    pub fn last_export(&self) -> Option<ExportRecord> {
        self.json("last_export")
    }

    pub fn record_reconcile(&mut self, r: &Reconciled) -> Result<(), StateError> {
        self.set_json("last_reconcile", r)
    }

    pub fn last_reconcile(&self) -> Option<Reconciled> {
        self.json("last_reconcile")
    }

    /// A record kept in `meta` as JSON (one that cannot be read is absent).
    fn set_json<T: serde::Serialize>(&mut self, key: &str, value: &T) -> Result<(), StateError> {
        self.set_meta(key, &serde_json::to_string(value).unwrap_or_default())
    }

    fn json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.meta(key).and_then(|v| serde_json::from_str(&v).ok())
    }

    /// Records what stopped the last cycle (None: it finished).
    pub fn record_problem(&mut self, problem: Option<&str>) -> Result<(), StateError> {
        match problem {
            Some(p) => self.set_meta("last_problem", p),
            None => {
                let path = self.path.clone();
                self.conn
                    .execute("DELETE FROM meta WHERE key = 'last_problem'", [])
                    .map(|_| ())
                    .map_err(db_err(&path))
            }
        }
    }

    pub fn problem(&self) -> Option<String> {
        self.meta("last_problem")
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StateError> {
        let path = self.path.clone();
        self.conn
            .execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                [key, value],
            )
            .map(|_| ())
            .map_err(db_err(&path))
    }

    /// (users, groups) the agent manages (known by objectGUID), and the results waiting to
    /// be acknowledged.
    pub fn counts(&self) -> Result<(usize, usize, usize), StateError> {
        let one = |sql: &str| -> Result<usize, StateError> {
            self.conn
                .query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(|n| n as usize)
                .map_err(db_err(&self.path))
        };
        Ok((
            one("SELECT COUNT(*) FROM users WHERE guid IS NOT NULL")?,
            one("SELECT COUNT(*) FROM groups WHERE guid IS NOT NULL")?,
            one("SELECT COUNT(*) FROM outbox")?,
        ))
    }

    /// Opens `dir`'s state to read it only (`status`): None when there is none yet. Its
    /// recorded enrollment is returned beside it, for the caller to compare: nothing is set
    /// aside or created here.
    pub fn open_read(dir: &Path) -> Result<Option<(State, Option<Binding>)>, StateError> {
        let path = dir.join("state.db");
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db_err(&path))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db_err(&path))?;
        schema_version(&conn, &path)?;
        let state = State {
            conn,
            path,
            binding: None,
        };
        let recorded = state
            .meta("enrollment")
            .and_then(|v| serde_json::from_str(&v).ok());
        Ok(Some((state, recorded)))
    }

    /// Where the last orphan scan got to (None: never scanned for this state).
    pub fn orphan_watermark(&self) -> Option<crate::ad::Watermark> {
        self.conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'orphan_watermark'",
                [],
                |r| r.get::<_, String>(0),
            )
            .ok()
            .and_then(|v| serde_json::from_str(&v).ok())
    }

    /// Records where an orphan scan got to.
    pub fn set_orphan_watermark(&mut self, w: &crate::ad::Watermark) -> Result<(), StateError> {
        let path = self.path.clone();
        self.conn
            .execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('orphan_watermark', ?1)",
                [serde_json::to_string(w).unwrap_or_default()],
            )
            .map(|_| ())
            .map_err(db_err(&path))
    }

    pub fn acked(&mut self, upto: i64) -> Result<(), StateError> {
        let path = self.path.clone();
        self.conn
            .execute("DELETE FROM outbox WHERE seq <= ?1", [upto])
            .map(|_| ())
            .map_err(db_err(&path))
    }
}

/// `state.db.set-aside-<unix time>` beside `path`, with `-2`, `-3`… when a state was already
/// set aside in the same second (two set-asides in one second happen: a new enrollment's first
/// run, then a restored cloud's): a rename onto an existing name would replace, and so delete,
/// the state set aside before.
fn aside_name(path: &Path, stamp: i64) -> PathBuf {
    let taken = |p: &Path| {
        ["", "-wal", "-shm"]
            .iter()
            .any(|s| PathBuf::from(format!("{}{s}", p.display())).exists())
    };
    let mut n = 1u32;
    loop {
        let name = if n == 1 {
            format!("state.db.set-aside-{stamp}")
        } else {
            format!("state.db.set-aside-{stamp}-{n}")
        };
        let candidate = path.with_file_name(name);
        if !taken(&candidate) {
            return candidate;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comparison_pages_users_by_count_and_groups_by_their_members() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut state = State::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let mut m = Mirror::default();
        let user = |id: &str| UserRec {
            user: User {
                id: id.into(),
                username: id.into(),
                given_name: "G".into(),
                surname: "S".into(),
                email: None,
                suspended: false,
                locked: false,
                display_name: None,
                links: Vec::new(),
            },
            password_set: false,
            guid: None,
        };
        for n in 0..9 {
            let id = format!("u{n}");
            m.users.insert(id.clone(), user(&id));
        }
        // g1: 3 users, g2: none (counts as one), g3: 5 users and a nested group, g4: 1 user.
        for (g, members) in [("g1", 0..3), ("g2", 0..0), ("g3", 3..8), ("g4", 8..9)] {
            m.groups.insert(
                g.into(),
                GroupRec {
                    id: g.into(),
                    name: g.into(),
                    guid: None,
                    links: Vec::new(),
                },
            );
            for n in members {
                m.edges
                    .insert((g.into(), MemberType::User, format!("u{n}")));
            }
        }
        m.edges
            .insert(("g3".into(), MemberType::Group, "g4".into()));
        state
            .commit(&Mirror::default(), &m, &[])
            .unwrap_or_else(|e| panic!("{e}"));
        // Every page, as a comparison goes through them (each after the last one's end).
        let pages = |next: &dyn Fn(&str) -> Result<Vec<String>, StateError>| {
            let mut pages = Vec::new();
            let mut after = String::new();
            loop {
                let page = next(&after).unwrap_or_else(|e| panic!("{e}"));
                let Some(last) = page.last() else { break };
                after = last.clone();
                pages.push(page.join(" "));
            }
            pages
        };
        assert_eq!(
            pages(&|after| state.users_after(after, 4)),
            ["u0 u1 u2 u3", "u4 u5 u6 u7", "u8"]
        );
        let pages = pages(&|after| state.group_page(after, 4));
        assert_eq!(pages, ["g1 g2", "g3", "g4"]);
    }

    fn with_cursor(state: &State, cursor: i64) {
        state
            .conn
            .execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('cursor', ?1)",
                [cursor.to_string()],
            )
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The states set aside in `dir` (not their `-wal`/`-shm` files).
    fn aside_files(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        n.starts_with("state.db.set-aside-")
                            && !n.ends_with("-wal")
                            && !n.ends_with("-shm")
                    })
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn aside(dir: &Path) -> usize {
        aside_files(dir).len()
    }

    #[test]
    fn a_state_belongs_to_one_enrollment() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cred = |s: &str| ad_sync_core::secret::Secret::new(s);
        let a = Binding::new(
            &cred("ADSA1-one"),
            "https://cloud.example.com/",
            "DC=example,DC=com",
        );
        let b = Binding::new(
            &cred("ADSA1-two"),
            "https://cloud.example.com",
            "DC=example,DC=com",
        );
        assert_ne!(a, b);
        assert!(
            !a.credential.contains("one"),
            "a fingerprint, not the credential"
        );
        // A new state is bound to its first enrollment.
        let (state, note) = State::open_bound(dir.path(), &a).unwrap_or_else(|e| panic!("{e}"));
        assert!(note.is_none());
        with_cursor(&state, 3);
        drop(state);
        let (state, note) = State::open_bound(dir.path(), &a).unwrap_or_else(|e| panic!("{e}"));
        assert!(note.is_none());
        assert_eq!(state.cursor(), 3);
        drop(state);
        // Another enrollment: set aside (kept), and it starts empty.
        let (state, note) = State::open_bound(dir.path(), &b).unwrap_or_else(|e| panic!("{e}"));
        let note = note.unwrap_or_else(|| panic!("no note"));
        assert!(note.contains("belongs to the enrollment"), "{note}");
        assert_eq!(state.cursor(), 0);
        assert_eq!(aside(dir.path()), 1);
        drop(state);
        let (_, note) = State::open_bound(dir.path(), &b).unwrap_or_else(|e| panic!("{e}"));
        assert!(note.is_none(), "bound to b now");
    }

    /// Two states set aside in the same second (a new enrollment's first run, then a restored
    /// cloud's next run, as the agent test does) are both kept: the second never replaces the
    /// first. Before, the second rename went onto the same name and deleted the first.
    #[test]
    fn states_set_aside_in_the_same_second_are_all_kept() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let binding = |k: &str| {
            Binding::new(
                &ad_sync_core::secret::Secret::new(k),
                "https://c",
                "DC=example,DC=com",
            )
        };
        for (i, key) in ["ADSA1-a", "ADSA1-b", "ADSA1-c"].iter().enumerate() {
            let (state, _) =
                State::open_bound(dir.path(), &binding(key)).unwrap_or_else(|e| panic!("{e}"));
            with_cursor(&state, 10 + i as i64);
        }
        assert_eq!(aside(dir.path()), 2, "two states set aside, both kept");
        // Each kept file is the state it was: cursors 10 and 11.
        let mut cursors: Vec<i64> = aside_files(dir.path())
            .iter()
            .map(|p| {
                Connection::open(p)
                    .and_then(|c| {
                        c.query_row("SELECT value FROM meta WHERE key = 'cursor'", [], |r| {
                            r.get::<_, String>(0)
                        })
                    })
                    .map(|v| v.parse().unwrap_or(-1))
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            })
            .collect();
        cursors.sort();
        assert_eq!(cursors, vec![10, 11]);
        // The names themselves: the second in a second gets `-2`.
        let base = dir.path().join("state.db");
        std::fs::write(dir.path().join("state.db.set-aside-5"), b"x")
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("state.db.set-aside-5-2-wal"), b"x")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            aside_name(&base, 5),
            dir.path().join("state.db.set-aside-5-3")
        );
        assert_eq!(
            aside_name(&base, 6),
            dir.path().join("state.db.set-aside-6")
        );
    }

    #[test]
    fn a_state_from_before_binding_is_set_aside_unless_empty() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let b = Binding::new(
            &ad_sync_core::secret::Secret::new("ADSA1-x"),
            "https://c",
            "DC=example,DC=com",
        );
        let old = State::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        with_cursor(&old, 7);
        drop(old);
        let (state, note) = State::open_bound(dir.path(), &b).unwrap_or_else(|e| panic!("{e}"));
        assert!(note.unwrap_or_default().contains("records no enrollment"));
        assert_eq!(state.cursor(), 0);
        drop(state);
        // An empty one is simply bound.
        let other = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        drop(State::open(other.path()).unwrap_or_else(|e| panic!("{e}")));
        let (_, note) = State::open_bound(other.path(), &b).unwrap_or_else(|e| panic!("{e}"));
        assert!(note.is_none());
    }

    fn held(id: &str, action: crate::plan::Action) -> Held {
        Held {
            id: id.into(),
            kind: HeldKind::User,
            name: id.into(),
            dn: format!("CN={id},OU=Staff,DC=example,DC=com"),
            action,
            what: format!("{action} CN={id}"),
            why: "the user was removed from the cloud".into(),
            since: 1,
            approved: false,
            user: None,
            group: None,
        }
    }

    #[test]
    fn approve_all_needs_the_reviewed_list_and_the_budget_counts_what_was_done() {
        use crate::plan::Action;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut state = State::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let m = Mirror::default();
        let list = vec![held("u-a", Action::Delete), held("u-b", Action::Suspend)];
        state
            .commit_with(&m, &m, &[], Some(&list), &[])
            .unwrap_or_else(|e| panic!("{e}"));
        let reviewed = digest(&list);
        // Stored and read back typed, in the words `pending` prints.
        let back = state.held().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            back.iter().map(|h| h.action).collect::<Vec<_>>(),
            vec![Action::Delete, Action::Suspend]
        );
        assert_eq!(digest(&back), reviewed);
        // Without --expect, or with a count or digest of another list: nothing approved.
        let refusals = [
            (None, "--approve-all needs --expect"),
            (Some(Expect::Count(3)), "changed since it was reviewed"),
            (
                Some(Expect::Digest("0123456789ab".into())),
                "changed since it was reviewed",
            ),
        ];
        for (expect, words) in refusals {
            match state.approve(None, expect.as_ref()) {
                Err(e) => assert!(e.to_string().contains(words), "{e}"),
                Ok(ids) => panic!("approved {ids:?} with {expect:?}"),
            }
            assert!(!state.has_approved().unwrap_or(true));
        }
        assert_eq!("12".parse::<Expect>(), Ok(Expect::Count(12)));
        assert!("zz".parse::<Expect>().is_err());
        // The list read: all approved in one transaction.
        let ids = state
            .approve(None, Some(&Expect::Digest(reviewed[..8].to_string())))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ids, vec!["u-a", "u-b"]);
        assert!(state.held().unwrap_or_default().iter().all(|h| h.approved));
        // By id, no --expect is needed; an unknown id approves nothing.
        assert!(matches!(
            state.approve(Some(&["u-x".to_string()]), None),
            Err(StateError::NotHeld { .. })
        ));

        // The budget's record: what was done, within the window.
        let now = ad_sync_core::time_fmt::now_unix();
        state
            .commit_with(
                &m,
                &m,
                &[],
                None,
                &[
                    (crate::mirror::ObjKey::User("u-a".into()), Action::Delete),
                    (crate::mirror::ObjKey::User("u-c".into()), Action::Suspend),
                ],
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(state.spent(now - 3600).unwrap_or(0), 2);
        assert_eq!(state.spent(now + 3600).unwrap_or(9), 0);
    }

    /// AD as a source's held suspensions sit beside the planner's disconnections: a cycle
    /// that rewrites its own list leaves them alone, `pending`'s list and approval cover
    /// both, and each direction's budget counts only its own.
    #[test]
    fn both_directions_held_lists_are_approved_together_and_budgeted_apart() {
        use crate::plan::Action;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut state = State::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let m = Mirror::default();
        state
            .commit_with(&m, &m, &[], Some(&[held("u-a", Action::Delete)]), &[])
            .unwrap_or_else(|e| panic!("{e}"));
        let ad_user = Held {
            kind: HeldKind::AdUser,
            ..held("u-ad", Action::Suspend)
        };
        let guid = "0f6b3c2e-8d4a-4f1e-9c7b-2a5d6e8f1a3b".to_string();
        state
            .hold_exports(&[(guid.clone(), ad_user.clone())])
            .unwrap_or_else(|e| panic!("{e}"));
        // Held again later: its first `since` stays.
        state
            .hold_exports(&[(
                guid.clone(),
                Held {
                    since: ad_user.since + 99,
                    ..ad_user.clone()
                },
            )])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            state.held_exports().unwrap_or_default()[0].1.since,
            ad_user.since
        );
        // A cycle replacing its own list keeps the other direction's.
        state
            .commit_with(&m, &m, &[], Some(&[held("u-b", Action::Delete)]), &[])
            .unwrap_or_else(|e| panic!("{e}"));
        let all = state.held_all().unwrap_or_default();
        assert_eq!(
            all.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
            ["u-b", "u-ad"]
        );
        assert_eq!(
            state.held().unwrap_or_default().len(),
            1,
            "the planner's own"
        );
        // Approved by id, whichever list holds it.
        let ids = state
            .approve(Some(&["u-ad".to_string()]), None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ids, ["u-ad"]);
        assert!(state.held_exports().unwrap_or_default()[0].1.approved);
        assert!(!state.held().unwrap_or_default()[0].approved);
        // --approve-all --expect is checked against both lists together.
        let both = digest(&state.held_all().unwrap_or_default());
        assert!(state.approve(None, Some(&Expect::Count(1))).is_err());
        state
            .approve(None, Some(&Expect::Digest(both)))
            .unwrap_or_else(|e| panic!("{e}"));
        // Each budget counts its own.
        state
            .record_export_suspensions(std::slice::from_ref(&guid))
            .unwrap_or_else(|e| panic!("{e}"));
        state
            .release_exports(&[guid])
            .unwrap_or_else(|e| panic!("{e}"));
        let now = ad_sync_core::time_fmt::now_unix();
        assert_eq!(state.export_spent(now - 60).unwrap_or(9), 1);
        assert_eq!(state.spent(now - 60).unwrap_or(9), 0);
        assert!(state.held_exports().unwrap_or_default().is_empty());
    }

    #[tokio::test]
    async fn one_cycle_lock_at_a_time() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let wait = std::time::Duration::from_millis(300);
        let first = CycleLock::acquire(dir.path(), wait)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(first.is_some());
        let second = CycleLock::acquire(dir.path(), wait)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(second.is_none(), "taken twice");
        drop(first);
        let third = CycleLock::acquire(dir.path(), wait)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(third.is_some(), "released on drop");
    }
}
