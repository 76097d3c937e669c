//! The agent the service runs: start-up (config and secrets from the store the installer used,
//! refusing ones others can read), the heartbeat that tells it whether it is the primary, and,
//! on the primary only, sync cycles: read the cloud's changes after the local cursor, bring AD
//! to them, write the state and cursor in one transaction, then acknowledge the results.
//!
//! - `mirror`: the cloud directory as folded from the change feed (pure).
//! - `ad`: the AD connection and operations.
//! - `sync`: planning and running one run's operations under the policies and safety rules.
//! - `state`: the local SQLite state.
//! - `logs`: log files that roll over by size and age.
//! - `idle`: what the service gives back to the system before it waits for its next step.

pub mod ad;
pub mod export;
pub mod idle;
pub mod import;
pub mod logs;
pub mod mirror;
pub mod plan;
pub mod progress;
pub mod state;
pub mod status;
pub mod sync;

use ad_sync_core::answers::Answers;
use ad_sync_core::cloud::api::{HeartbeatRequest, Role};
use ad_sync_core::cloud::client::{CloudClient, CloudOptions};
use ad_sync_core::secret::Secret;
use ad_sync_core::secrets::{
    AGENT_CREDENTIAL, AGENT_PRIVATE_KEY, FileStore, SERVICE_ACCOUNT_PASSWORD,
};
use mirror::{Mirror, Work};
use state::{State, StateError};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use sync::{RunError, Settings};

/// Changes read from the cloud per request, and at most per run. A run holds its changes,
/// what they touch of the mirror and AD's answers for it until it commits, so the cap bounds
/// a run's memory whatever the directory's size. The rest goes to the next run, which `--once`
/// and the service start at once.
const PAGE: i64 = 1000;
pub const MAX_PER_RUN: usize = 2_000;
/// A full comparison of everything managed with AD, besides the one at start-up.
const RESYNC_EVERY: Duration = Duration::from_secs(6 * 3600);
/// Users per pass of a full comparison (`compare_all`): a pass of users holds this many, a
/// pass of groups as many groups as have about this many users between them.
const COMPARE_PAGE: usize = 2_000;

/// `COMPARE_PAGE`; the tests' builds (`fault-hooks`) compare two objects a pass (or
/// `AD_SYNC_COMPARE_PAGE`), so that every comparison of the live tests goes through several.
fn compare_page_size() -> usize {
    #[cfg(feature = "fault-hooks")]
    {
        std::env::var("AD_SYNC_COMPARE_PAGE")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or(2)
            .min(COMPARE_PAGE)
    }
    #[cfg(not(feature = "fault-hooks"))]
    COMPARE_PAGE
}

pub struct Agent {
    pub config_path: PathBuf,
    pub answers: Answers,
    pub credential: Secret,
    pub password: Secret,
    pub private_key: Option<Secret>,
    pub client: CloudClient,
    pub host: String,
}

/// How long a cycle waits for the state's lock (`pending` approving) before it gives up.
const CYCLE_LOCK_WAIT: Duration = Duration::from_secs(30);

/// How `run` behaves.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub dry_run: bool,
    /// Compare everything managed with AD now (also done at start-up and every 6 hours).
    pub resync: bool,
    pub allow_deletions: Option<usize>,
    pub state_dir: PathBuf,
    /// Operations in flight at once.
    pub concurrency: usize,
    /// Where each run's progress goes (nowhere by default).
    pub meter: progress::Meter,
}

/// What one cycle did (`run --once --json` prints it).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct CycleReport {
    pub changes: usize,
    pub operations: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Users and groups created in AD (in a dry run: that would be).
    pub created: usize,
    /// Existing AD objects taken over (in a dry run: that would be).
    pub adopted: usize,
    pub cursor: i64,
    pub resynced: bool,
    /// The run stopped at `MAX_PER_RUN` changes and the cloud has more: the next run follows
    /// at once.
    pub more: bool,
    pub planned: Vec<String>,
    /// Disconnections the deletion threshold holds after this cycle (see `pending`).
    pub held: usize,
    /// The threshold that held them, when this cycle went over it.
    pub blocked: Option<plan::OverThreshold>,
    /// Objects found with the agent's marker that no cloud object the agent knows has.
    pub orphans: usize,
    /// The changes it failed, with their reasons (what `status` shows).
    pub failures: Vec<state::RunFailure>,
}

/// The held disconnections a run started with, and its settings with their approvals.
struct Holds {
    settings: Settings,
    known: Vec<state::Held>,
}

impl Holds {
    /// What is held after the run `r` over `work`: each disconnection it held, with the record
    /// to find its AD object again and since when (kept from before when it was held already).
    fn after(
        &self,
        r: &sync::Report,
        work: &Work,
        orphans: &HashSet<mirror::ObjKey>,
    ) -> Vec<state::Held> {
        let now = ad_sync_core::time_fmt::now_unix();
        r.held
            .iter()
            .filter_map(|j| {
                let (kind, id) = match &j.key {
                    mirror::ObjKey::User(id) => (state::HeldKind::User, id),
                    mirror::ObjKey::Group(id) => (state::HeldKind::Group, id),
                    mirror::ObjKey::Password(_) => return None,
                };
                let before = self
                    .known
                    .iter()
                    .find(|h| h.kind == kind && &h.id == id && h.action == j.action);
                let user = work.removed_users.iter().find(|u| &u.user.id == id).cloned();
                let group = work.removed_groups.iter().find(|g| &g.id == id).cloned();
                Some(state::Held {
                    id: id.clone(),
                    kind,
                    name: j.name.clone(),
                    dn: j.dn.clone(),
                    action: j.action,
                    what: j.what.clone(),
                    why: before.map(|h| h.why.clone()).unwrap_or_else(|| {
                        if j.action == plan::Action::Suspend {
                            "the user was suspended in the cloud".into()
                        } else if orphans.contains(&j.key) {
                            "an orphan: it carries the agent's marker, but no cloud object the agent knows has this id (the agent's state was lost while the cloud removed it)".into()
                        } else {
                            format!("the {kind} was removed from the cloud")
                        }
                    }),
                    since: before.map_or(now, |h| h.since),
                    approved: false,
                    user,
                    group,
                })
            })
            .collect()
    }
}

/// An orphan found by a full comparison: (key, user record, group record).
type Orphan = (
    mirror::ObjKey,
    Option<mirror::UserRec>,
    Option<mirror::GroupRec>,
);

/// The marked objects (`Ad::marked`) that no cloud object the agent knows (`known(is_group,
/// id)`, the state) or holds has, as removal records.
fn orphans(
    marked: &[ad::Obj],
    known: impl Fn(bool, &str) -> Result<bool, StateError>,
    work: &Work,
) -> Result<Vec<Orphan>, StateError> {
    let mut out = Vec::new();
    for o in marked {
        let Some(id) = o.marker_id() else { continue };
        if o.is_group {
            if known(true, id)? || work.removed_groups.iter().any(|g| g.id == id) {
                continue;
            }
            out.push((
                mirror::ObjKey::Group(id.to_string()),
                None,
                Some(mirror::GroupRec {
                    id: id.to_string(),
                    name: o.sam.clone(),
                    guid: Some(o.guid.clone()),
                    links: Vec::new(),
                }),
            ));
        } else if o.is_user {
            if known(false, id)? || work.removed_users.iter().any(|u| u.user.id == id) {
                continue;
            }
            out.push((
                mirror::ObjKey::User(id.to_string()),
                Some(mirror::UserRec {
                    user: ad_sync_core::cloud::api::User {
                        id: id.to_string(),
                        username: o.sam.clone(),
                        given_name: o.given.clone().unwrap_or_default(),
                        surname: o.sn.clone().unwrap_or_default(),
                        email: o.mail.clone(),
                        suspended: false,
                        locked: false,
                        display_name: o.display.clone(),
                        links: Vec::new(),
                    },
                    password_set: false,
                    guid: Some(o.guid.clone()),
                }),
                None,
            ));
        }
    }
    Ok(out)
}

/// Where the secrets are: systemd's credentials folder when the service runs under systemd
/// (`LoadCredential=`), otherwise the store beside the config.
pub fn store_for(config: &Path) -> FileStore {
    match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) => FileStore::new(dir),
        None => FileStore::beside_config(config),
    }
}

/// The state folder: `$STATE_DIRECTORY` under systemd, else the installed layout's.
pub fn default_state_dir(config: &Path) -> PathBuf {
    match std::env::var_os("STATE_DIRECTORY") {
        Some(d) => PathBuf::from(d),
        None => ad_sync_core::install::layout::Layout::new(config, Path::new(""), None).state_dir,
    }
}

/// The log folder: `$LOGS_DIRECTORY` under systemd, else the installed layout's.
pub fn default_log_dir(config: &Path) -> PathBuf {
    match std::env::var_os("LOGS_DIRECTORY") {
        Some(d) => PathBuf::from(d),
        None => ad_sync_core::install::layout::Layout::new(config, Path::new(""), None).log_dir,
    }
}

/// Why the agent cannot start or go on; each says what is wrong and what to do. The binary
/// turns each kind into its exit code (see `ad-sync-agent --help`).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The installed config or a secret cannot be used: the install must be fixed.
    #[error("{0}")]
    Setup(String),
    /// The state cannot be opened.
    #[error(transparent)]
    State(#[from] StateError),
    /// The cloud did not answer the heartbeat (or refused it).
    #[error("heartbeat: {0}; {fix}", fix = .0.fix())]
    Heartbeat(ad_sync_core::cloud::client::CloudError),
    /// A sync run stopped.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// Refuses a config that users other than the owner can read or change.
fn check_private(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    if let Some(mode) = ad_sync_core::install::fsops::mode_of(path)
        && mode & 0o077 != 0
    {
        return Err(format!(
            "config {}: other users can read or change it (mode {mode:o}); it is not used. Run `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    // Windows: owner and DACL, as the installer set them (`access::judge_installed`).
    #[cfg(windows)]
    check_acl(path, ad_sync_core::install::access::Installed::Config)?;
    #[cfg(not(any(unix, windows)))]
    let _ = path;
    Ok(())
}

/// On Windows, refuses a config, secrets or state folder that someone other than SYSTEM and
/// Administrators owns, or that an ordinary account may change (or, for the secrets, read):
/// what `check_private` is on Linux. Under Wine, which keeps no ACLs, it cannot be checked,
/// and the log says so.
#[cfg(windows)]
fn check_acl(path: &Path, kind: ad_sync_core::install::access::Installed) -> Result<(), String> {
    use ad_sync_core::install::winsec;
    if !path.exists() {
        return Ok(());
    }
    if winsec::is_wine() {
        tracing::info!(
            "{}: its owner and DACL are not checked under Wine (Wine keeps no ACLs); on Windows one that others own, may change or (secrets) read is refused",
            path.display()
        );
        return Ok(());
    }
    let sddl = winsec::get(path).map_err(|e| {
        format!(
            "{e}; the agent does not use what it cannot prove private. Run ad-sync-setup again as Administrator"
        )
    })?;
    ad_sync_core::install::access::judge_installed(path, kind, &sddl)
}

impl Agent {
    pub fn start(config: &Path) -> Result<Agent, AgentError> {
        Agent::start_inner(config).map_err(AgentError::Setup)
    }

    fn start_inner(config: &Path) -> Result<Agent, String> {
        check_private(config)?;
        let installed = ad_sync_core::install::config::read_installed(config)?;
        let answers = installed.answers;
        let store = store_for(config);
        #[cfg(windows)]
        check_acl(
            store.dir(),
            ad_sync_core::install::access::Installed::Secrets,
        )?;
        let credential = store.read(AGENT_CREDENTIAL).map_err(|e| {
            format!("the agent's credential: {e}. The agent is not enrolled: run ad-sync-setup (or `ad-sync-setup install --answers FILE`) to finish the install")
        })?;
        let password = store.read(SERVICE_ACCOUNT_PASSWORD).map_err(|e| {
            format!("the service account's password: {e}. Re-run ad-sync-setup to store it")
        })?;
        let private_key = match store.read(AGENT_PRIVATE_KEY) {
            Ok(k) => Some(k),
            Err(ad_sync_core::secrets::StoreError::Missing { .. }) => None,
            Err(e) => return Err(format!("the agent's private key: {e}")),
        };
        let cloud = answers
            .cloud
            .as_ref()
            .ok_or("config: no [cloud] section; re-run ad-sync-setup")?;
        let client = CloudClient::new(&CloudOptions {
            url: cloud.url.clone().unwrap_or_default(),
            ca_file: cloud.ca_file.as_deref().map(|p| answers.path(p)),
            timeout: cloud.timeout(),
            // `[cloud] proxy` (with its password from the store), or directly: never the
            // environment's, which the installer's checks did not use either.
            route: answers.cloud_route(match store.read(ad_sync_core::secrets::PROXY_PASSWORD) {
                Ok(p) => Some(p),
                Err(ad_sync_core::secrets::StoreError::Missing { .. }) => None,
                Err(e) => return Err(format!("the proxy's password: {e}")),
            }),
        })
        .map_err(|e| format!("[cloud] {e}; {}", e.fix()))?;
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        Ok(Agent {
            config_path: config.to_path_buf(),
            answers,
            credential,
            password,
            private_key,
            client,
            host,
        })
    }

    /// One heartbeat: the role the cloud gives this agent and the interval it asks for.
    pub async fn heartbeat(&self, problem: Option<&str>) -> Result<(Role, Duration), AgentError> {
        self.heartbeat_with(problem, None).await
    }

    /// A heartbeat that also says how the runs go (held disconnections, failed changes, the
    /// last successful run), for the cloud's status page and alerts.
    pub async fn heartbeat_with(
        &self,
        problem: Option<&str>,
        run: Option<ad_sync_core::cloud::api::RunHealth>,
    ) -> Result<(Role, Duration), AgentError> {
        let req = HeartbeatRequest {
            run,
            version: env!("CARGO_PKG_VERSION").into(),
            host: self.host.clone(),
            status: if problem.is_some() { "degraded" } else { "ok" }.into(),
            // Within the cloud's bounds (1,000 characters, no control characters): a long
            // error is cut, never the reason the heartbeat fails.
            message: problem.map(|p| {
                p.chars()
                    .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
                    .take(1000)
                    .collect()
            }),
        };
        let r = self
            .client
            .heartbeat(&self.credential, &req)
            .await
            .map_err(AgentError::Heartbeat)?;
        Ok((r.role, heartbeat_interval(r.heartbeat_interval_seconds)))
    }

    fn settings(&self, opts: &RunOptions) -> Settings {
        Settings {
            policy: self.answers.sync.clone(),
            dry_run: opts.dry_run,
            allow_deletions: opts.allow_deletions,
            approved: HashSet::new(),
            consented: HashSet::new(),
            spent: 0,
            concurrency: opts.concurrency.max(1),
            meter: opts.meter.clone(),
            tier0: None,
        }
    }

    /// Sends the results the state holds but the cloud has not acknowledged.
    async fn flush_acks(&self, state: &mut State) -> Result<(), RunError> {
        let pending = state.outbox()?;
        for chunk in pending.chunks(1000) {
            let upto = chunk.iter().map(|r| r.seq).max().unwrap_or(0);
            self.client
                .ack(&self.credential, chunk.to_vec())
                .await
                .map_err(|e| {
                    RunError::Unavailable(format!(
                        "acknowledging results to the cloud: {e}; {}",
                        e.fix()
                    ))
                })?;
            state.acked(upto)?;
        }
        Ok(())
    }

    /// One sync cycle on the primary: pending acknowledgements, then the changes after the
    /// cursor, then (when asked) a full comparison with AD. Nothing is committed unless AD
    /// confirmed every operation it needed; a dry run commits nothing at all.
    ///
    /// The mirror is read from the state only when there is work, and dropped after it: an
    /// idle agent holds none of the directory in memory.
    pub async fn cycle(
        &self,
        state: &mut State,
        opts: &RunOptions,
        resync: bool,
    ) -> Result<CycleReport, RunError> {
        // One cycle at a time on this state: `pending --approve` waits for it, and it for
        // an approval being written.
        let Some(lock) = state::CycleLock::acquire(&state.dir(), CYCLE_LOCK_WAIT).await? else {
            return Err(RunError::Unavailable(format!(
                "the state is locked by another ad-sync-agent (`pending` approving, or another agent process on this state) for more than {} s; this run is retried",
                CYCLE_LOCK_WAIT.as_secs()
            )));
        };
        opts.meter
            .start(ad_sync_core::progress::Task::Sync, opts.dry_run);
        let r = self.cycle_inner(state, opts, resync).await;
        opts.meter.finish();
        if !opts.dry_run {
            // What `status` shows: the reason this cycle stopped, or none.
            let problem = r.as_ref().err().map(|e| e.to_string());
            if let Err(e) = state.record_problem(problem.as_deref()) {
                tracing::warn!("the run's outcome could not be recorded for `status`: {e}");
            }
        }
        drop(lock);
        idle::release_heap();
        r
    }

    async fn cycle_inner(
        &self,
        state: &mut State,
        opts: &RunOptions,
        resync: bool,
    ) -> Result<CycleReport, RunError> {
        let mut cursor = state.cursor();
        let mut changes = Vec::new();
        let mut after = cursor;
        // The feed is read before the acknowledgements are sent: a cloud restored from a
        // backup (its feed ends before this state's cursor) is found first, and this state,
        // with results for changes that cloud never sent, is set aside.
        let mut acks_flushed = false;
        let mut more = false;
        loop {
            let page = self
                .client
                .changes(&self.credential, after, PAGE)
                .await
                .map_err(|e| {
                    RunError::Unavailable(format!(
                        "reading changes from the cloud: {e}; {}",
                        e.fix()
                    ))
                })?;
            // A page must move forward: changes in order, after the cursor asked for, and a
            // cursor at the last of them. A cloud that says `more` without progress (or goes
            // back) would keep this loop asking for ever.
            if let Some(head) = page.head
                && head < after
                && !opts.dry_run
            {
                let note = state.set_aside(&format!(
                    "its cursor ({after}) is past the end of the cloud's change feed ({head}): the cloud was restored from a backup or rebuilt, so this state describes changes it no longer has"
                ))?;
                tracing::warn!("{note}");
                cursor = 0;
                after = 0;
                changes.clear();
                continue;
            }
            if let Some(bad) = page_problem(after, &page) {
                return Err(RunError::Unavailable(format!(
                    "reading changes from the cloud: {bad}; this run stops here (nothing was applied) and the next one asks again"
                )));
            }
            if !acks_flushed && !opts.dry_run {
                self.flush_acks(state).await?;
                acks_flushed = true;
            }
            after = page.cursor;
            opts.meter.tick(page.changes.len() as u64);
            changes.extend(page.changes);
            if !page.more {
                break;
            }
            if changes.len() >= MAX_PER_RUN {
                more = true;
                break;
            }
        }
        let mut report = CycleReport {
            changes: changes.len(),
            cursor,
            more,
            ..CycleReport::default()
        };
        let approved = !opts.dry_run && state.has_approved()?;
        if changes.is_empty() && !resync && !approved {
            report.held = state.held()?.len();
            return Ok(report);
        }
        // Only what the changes touch (and what is held, which is planned again); a full
        // comparison reads the rest a page at a time.
        let mut mirror = state.load_for(&self.needs(state, &changes)?)?;
        let mirror = &mut mirror;
        let settings = self.settings(opts);
        let ad = ad::Ad::connect(&self.answers, &self.password)
            .await
            .map_err(|e| RunError::Unavailable(e.to_string()))?;
        let result = self
            .apply(&ad, state, mirror, &changes, &settings, resync, &mut report)
            .await;
        ad.close().await;
        result?;
        if !opts.dry_run {
            // Test hook: the run is committed, its results not yet acknowledged.
            ad_sync_core::fault::point("AD_SYNC_AGENT_FAULT", "ack");
            state.record_run(
                ad_sync_core::time_fmt::now_unix(),
                report.held,
                report.failed,
                report.failures.clone(),
            )?;
            self.flush_acks(state).await?;
        }
        Ok(report)
    }

    #[allow(clippy::too_many_arguments)]
    async fn apply(
        &self,
        ad: &ad::Ad,
        state: &mut State,
        mirror: &mut Mirror,
        changes: &[ad_sync_core::cloud::api::Change],
        settings: &Settings,
        resync: bool,
        report: &mut CycleReport,
    ) -> Result<(), RunError> {
        let approved = !settings.dry_run && state.has_approved()?;
        if !changes.is_empty() || approved {
            // The mirror as loaded becomes `before` (moved, not copied: the directory is held
            // twice, not three times); `mirror` is `next` again once committed, and an error
            // or a dry run ends the cycle without reading it.
            let before = std::mem::take(mirror);
            let mut next = before.clone();
            let mut work = Work::default();
            next.fold(
                changes,
                !settings.policy.sync_account_locked_out_status,
                &mut work,
            );
            let held = self.hold_again(state, &next, &mut work, settings)?;
            let r = sync::reconcile(
                ad,
                &mut next,
                &before,
                &work,
                self.private_key.as_ref(),
                &held.settings,
            )
            .await?;
            let still_held = held.after(&r, &work, &HashSet::new());
            report.held = still_held.len();
            report.blocked = r.blocked.clone();
            report.operations += r.operations;
            report.failed += r.failed;
            report.failures.extend(
                r.results
                    .iter()
                    .filter(|c| c.status == ad_sync_core::cloud::api::ApplyStatus::Failed)
                    .map(|c| state::RunFailure {
                        seq: c.seq,
                        reason: c.message.clone(),
                    }),
            );
            report.skipped += r.skipped;
            report.created += r.created;
            report.adopted += r.adopted;
            report.planned.extend(r.planned);
            if settings.dry_run {
                return Ok(());
            }
            // Test hook: AD has every write of this run, the state none of it yet.
            ad_sync_core::fault::point("AD_SYNC_AGENT_FAULT", "commit");
            state.commit_with(
                &before,
                &next,
                &r.results,
                Some(&still_held),
                &r.disconnected,
            )?;
            *mirror = next;
            report.cursor = mirror.cursor;
            tracing::info!(
                changes = changes.len(),
                operations = r.operations,
                failed = r.failed,
                skipped = r.skipped,
                created = r.created,
                adopted = r.adopted,
                cursor = mirror.cursor,
                "applied the cloud's changes to AD"
            );
        }
        if resync {
            self.compare_all(ad, state, settings, report).await?;
        }
        Ok(())
    }

    /// What a run of `changes` needs from the state: what they name, and what is held.
    fn needs(
        &self,
        state: &State,
        changes: &[ad_sync_core::cloud::api::Change],
    ) -> Result<mirror::Needs, StateError> {
        let match_mode = self.answers.sync.group_membership_sync_type
            == ad_sync_core::answers::MembershipSyncType::Match;
        let mut needs = mirror::Needs::of(changes, match_mode);
        for h in state.held()? {
            match h.kind {
                state::HeldKind::User => needs.users.insert(h.id),
                state::HeldKind::Group => needs.groups.insert(h.id),
                _ => false,
            };
        }
        Ok(needs)
    }

    /// A full comparison of everything managed with AD, a page of the directory at a time so
    /// that its memory does not grow with the directory: the users `COMPARE_PAGE` at a time,
    /// then the groups, as many a pass as hold about `COMPARE_PAGE` users (a pass loads its
    /// groups' members), then the disconnections: what is held, and the orphans. Each pass is
    /// committed on its own (an error stops the comparison there; the passes before it stay
    /// done, as a run of changes does). The disconnections are one pass, so the deletion
    /// budget counts them together; a suspension found on a page of users counts with what
    /// earlier passes disconnected, and `--allow-deletions N` allows N for the whole
    /// comparison, not N a pass.
    async fn compare_all(
        &self,
        ad: &ad::Ad,
        state: &mut State,
        settings: &Settings,
        report: &mut CycleReport,
    ) -> Result<(), RunError> {
        let started = Instant::now();
        // What is held, planned again in the last pass (its cloud objects, if any, loaded).
        let needs = self.needs(state, &[])?;
        let held_mirror = state.load_for(&needs)?;
        let mut last = Work::default();
        let mut held = self.hold_again(state, &held_mirror, &mut last, settings)?;
        drop(held_mirror);
        // Who holds power, read once for every pass of this comparison, as one run reads it.
        let power = Instant::now();
        let tier0 = sync::read_tier0(ad).await?;
        tracing::debug!(target: "ad_sync_agent::phase", "tier0 once for the comparison ({} privileged): {:.4} s", tier0.len(), power.elapsed().as_secs_f64());
        if let Some(why) = tier0.blanket() {
            tracing::warn!("no account is proven unprivileged, so none is written: {why}");
        }
        held.settings.tier0 = Some(std::sync::Arc::new(tier0));
        // Orphans: objects in the agent's containers that carry its marker for a cloud
        // object it does not know (its state was lost while the cloud removed them). They
        // get the disconnection policy, within the threshold, like any removal. The marker
        // is not indexed, so the whole containers are read only for a state's first scan
        // (or on another DC); after that only what changed since the last scan (uSNChanged,
        // indexed). A state restored from a backup brings back its older watermark, so what
        // the agent made after the backup is read again.
        let scan = Instant::now();
        let mark = ad
            .watermark()
            .await
            .map_err(|e| RunError::Unavailable(e.to_string()))?;
        let since = state
            .orphan_watermark()
            .filter(|w| w.dc == mark.dc)
            .map(|w| w.usn);
        // Only the marked objects the state does not know are kept from the scan.
        let mut unreadable = None;
        let (read, marked) = ad
            .marked(since, |o| match o.marker_id() {
                Some(id) => match state.knows(o.is_group, id) {
                    Ok(known) => !known,
                    Err(e) => {
                        unreadable.get_or_insert(e);
                        false
                    }
                },
                None => false,
            })
            .await
            .map_err(|e| RunError::Unavailable(e.to_string()))?;
        if let Some(e) = unreadable {
            return Err(e.into());
        }
        let orphans = orphans(&marked, |g, id| state.knows(g, id), &last)?;
        tracing::debug!(target: "ad_sync_agent::phase", "orphan scan ({}, {read} marked objects, {} orphans): {:.4} s", if since.is_some() { "changed since the last" } else { "whole containers" }, orphans.len(), scan.elapsed().as_secs_f64());
        drop(marked);
        report.orphans = orphans.len();
        let orphan_keys: HashSet<mirror::ObjKey> = orphans.iter().map(|o| o.0.clone()).collect();
        for (_, user, group) in orphans {
            last.removed_users.extend(user);
            last.removed_groups.extend(group);
        }
        // Users held for a suspension are planned in the last pass only.
        let held_users: HashSet<String> = last.users.iter().cloned().collect();
        let mut still_held = Vec::new();
        let (mut users, mut groups) = (0, 0);
        // Disconnections made by this comparison's earlier passes: all, and those not approved
        // (what `--allow-deletions` counts).
        let mut made = (0, 0);
        for of_groups in [false, true] {
            let mut after = String::new();
            loop {
                let page = if of_groups {
                    state.group_page(&after, compare_page_size())?
                } else {
                    state.users_after(&after, compare_page_size())?
                };
                let Some(tail) = page.last() else { break };
                after = tail.clone();
                let ids: std::collections::BTreeSet<String> = page
                    .into_iter()
                    .filter(|id| of_groups || !held_users.contains(id))
                    .collect();
                let (mut needs, mut work) = (mirror::Needs::default(), Work::default());
                if of_groups {
                    groups += ids.len();
                    // Compared whole: every member loaded.
                    needs.whole = ids.clone();
                    needs.groups = ids.clone();
                    work.groups = ids;
                } else {
                    users += ids.len();
                    needs.users = ids.clone();
                    work.users = ids;
                }
                let held_now = self
                    .compare_page(
                        ad,
                        state,
                        (&needs, &work),
                        &held,
                        &orphan_keys,
                        None,
                        &mut made,
                        report,
                    )
                    .await?;
                still_held.extend(held_now);
                idle::release_heap();
            }
        }
        let needs = mirror::Needs {
            users: last.users.clone(),
            ..Default::default()
        };
        let held_now = self
            .compare_page(
                ad,
                state,
                (&needs, &last),
                &held,
                &orphan_keys,
                Some(&still_held),
                &mut made,
                report,
            )
            .await?;
        report.resynced = true;
        if settings.dry_run {
            return Ok(());
        }
        state.set_orphan_watermark(&mark)?;
        tracing::info!(
            users,
            groups,
            held = held_now.len(),
            operations = report.operations,
            failed = report.failed,
            seconds = started.elapsed().as_secs_f32(),
            "compared everything managed with AD"
        );
        Ok(())
    }

    /// One pass of `compare_all`: `work` compared with AD on the mirror `needs` loads, and
    /// committed (what it held added to `held_before`; the last pass, which has
    /// `held_before`, writes the held list). Returns what it held (the last pass: how many
    /// are held in all).
    #[allow(clippy::too_many_arguments)]
    async fn compare_page(
        &self,
        ad: &ad::Ad,
        state: &mut State,
        (needs, work): (&mirror::Needs, &Work),
        held: &Holds,
        orphan_keys: &HashSet<mirror::ObjKey>,
        held_before: Option<&[state::Held]>,
        made: &mut (usize, usize),
        report: &mut CycleReport,
    ) -> Result<Vec<state::Held>, RunError> {
        let loading = Instant::now();
        let before = state.load_for(needs)?;
        let mut next = before.clone();
        tracing::debug!(target: "ad_sync_agent::phase", "state load: {:.4} s", loading.elapsed().as_secs_f64());
        // What earlier passes disconnected counts against the budget's window, and against
        // `--allow-deletions`, which is for the whole comparison.
        let settings = Settings {
            spent: held.settings.spent + made.0,
            allow_deletions: held
                .settings
                .allow_deletions
                .map(|n| n.saturating_sub(made.1)),
            ..held.settings.clone()
        };
        let r = sync::reconcile(ad, &mut next, &before, work, None, &settings).await?;
        made.0 += r.disconnected.len();
        made.1 += r
            .disconnected
            .iter()
            .filter(|(k, _)| !settings.approved.contains(k))
            .count();
        let mut now_held = held.after(&r, work, orphan_keys);
        report.blocked = r.blocked.clone().or(report.blocked.take());
        report.operations += r.operations;
        report.failed += r.failed;
        report.created += r.created;
        report.adopted += r.adopted;
        report.planned.extend(r.planned);
        if let Some(earlier) = held_before {
            now_held.extend(earlier.iter().cloned());
            report.held = now_held.len();
        }
        if settings.dry_run {
            return Ok(now_held);
        }
        // The objectGUIDs it adopted (the cursor stays where it is), and what is held.
        let committing = Instant::now();
        state.commit_with(
            &before,
            &next,
            &[],
            held_before.map(|_| now_held.as_slice()),
            &r.disconnected,
        )?;
        tracing::debug!(target: "ad_sync_agent::phase", "state commit: {:.4} s", committing.elapsed().as_secs_f64());
        Ok(now_held)
    }

    /// How the runs go, from the state: what is held now, and the last run's figures.
    pub fn run_health(state: &State) -> ad_sync_core::cloud::api::RunHealth {
        let last = state.last_run();
        let when = |t: i64| (t > 0).then(|| ad_sync_core::time_fmt::unix_to_rfc3339(t));
        ad_sync_core::cloud::api::RunHealth {
            held: state.held_all().map_or(last.held, |h| h.len()) as u64,
            failed: last.failed as u64,
            last_success: when(last.last_success),
            last_run: when(last.at),
            last_reconcile: state.last_reconcile().and_then(|r| when(r.at)),
            held_from_ad: state.held_exports().map_or(0, |h| h.len()) as u64,
        }
    }

    /// Feeds the disconnections held so far back into `work` (unless their cloud object came
    /// back), with the approved ones in the settings: a held disconnection is planned again
    /// every run until it is approved and done.
    fn hold_again(
        &self,
        state: &State,
        next: &Mirror,
        work: &mut Work,
        settings: &Settings,
    ) -> Result<Holds, RunError> {
        let started = Instant::now();
        let held = state.held()?;
        tracing::debug!(target: "ad_sync_agent::phase", "state check (held disconnections, {}): {:.4} s", held.len(), started.elapsed().as_secs_f64());
        let mut approved = HashSet::new();
        let mut known = Vec::new();
        for h in held {
            // A removal is over when its cloud object is back; a suspension when the cloud
            // lifted it (or the user is gone, and its removal is planned as such).
            let back = match (h.kind, h.action) {
                (_, plan::Action::Suspend) => {
                    !next.users.get(&h.id).is_some_and(|u| u.user.suspended)
                }
                (state::HeldKind::Group, _) => next.groups.contains_key(&h.id),
                (state::HeldKind::User, _) => next.users.contains_key(&h.id),
                // Never in this table (AD as a source keeps its own): not the planner's.
                (
                    state::HeldKind::AdUser | state::HeldKind::AdGroup | state::HeldKind::AdContact,
                    _,
                ) => continue,
            };
            if back {
                tracing::info!(
                    "{} {} is in the cloud again: its held disconnection is dropped",
                    h.kind,
                    h.id
                );
                continue;
            }
            if h.action == plan::Action::Suspend {
                work.users.insert(h.id.clone());
            }
            if let Some(u) = &h.user
                && !work.removed_users.iter().any(|r| r.user.id == h.id)
            {
                work.removed_users.push(u.clone());
            }
            if let Some(g) = &h.group
                && !work.removed_groups.iter().any(|r| r.id == h.id)
            {
                work.removed_groups.push(g.clone());
            }
            if h.approved {
                approved.insert(h.key());
            }
            known.push(h);
        }
        Ok(Holds {
            settings: Settings {
                approved,
                consented: state.imported()?,
                spent: state.spent(
                    ad_sync_core::time_fmt::now_unix()
                        - i64::from(settings.policy.deletion_window_hours) * 3600,
                )?,
                ..settings.clone()
            },
            known,
        })
    }

    /// AD's changes since the cloud's cursor sent to the cloud (`export::export_configured`),
    /// with the outcome recorded for `status`. `Err` is the reason in words.
    pub async fn export_and_record(
        &self,
        state: &mut State,
        opts: &export::ExportOptions,
    ) -> Result<export::ExportReport, String> {
        let started = ad_sync_core::time_fmt::now_unix();
        let r = export::export_configured(self, state, opts).await;
        let record = state::export_record(started, &r, state.last_export().as_ref());
        if let Err(e) = state.record_export(&record) {
            tracing::warn!("the export's outcome could not be recorded for `status`: {e}");
        }
        if let Ok(rep) = &r {
            let t = &rep.took;
            tracing::info!(
                full = rep.full,
                heartbeat_ms = t.heartbeat_ms,
                connect_ms = t.connect_ms,
                account_ms = t.account_ms,
                cursor_ms = t.cursor_ms,
                changes_ms = t.changes_ms,
                reconcile_ms = t.reconcile_ms,
                "AD to the cloud: {} changed user(s), group(s) and contact(s): {} created, {} updated, {} suspended, {} restored, {} refused",
                rep.changed,
                rep.created,
                rep.updated,
                rep.suspended,
                rep.restored,
                rep.refused.len()
            );
            for (guid, why) in &rep.refused {
                tracing::warn!(
                    event = logs::event::EXPORT_REFUSED,
                    "the cloud refused the AD object {guid}: {why}"
                );
            }
        }
        r
    }

    /// Every pending change (as many runs as it takes), then the comparison with AD when
    /// `opts.resync` asks for it: what `--once` does. A dry run plans the first run only.
    pub async fn drain(
        &self,
        state: &mut State,
        opts: &RunOptions,
    ) -> Result<CycleReport, RunError> {
        let mut total = CycleReport::default();
        loop {
            let r = self.cycle(state, opts, false).await?;
            total.changes += r.changes;
            total.operations += r.operations;
            total.failed += r.failed;
            total.failures.extend(r.failures);
            total.skipped += r.skipped;
            total.created += r.created;
            total.adopted += r.adopted;
            total.cursor = r.cursor;
            total.planned.extend(r.planned);
            total.held = r.held;
            total.blocked = r.blocked.or(total.blocked);
            if !r.more || opts.dry_run {
                break;
            }
        }
        if opts.resync {
            let r = self.cycle(state, opts, true).await?;
            total.operations += r.operations;
            total.failed += r.failed;
            total.failures.extend(r.failures);
            total.skipped += r.skipped;
            total.created += r.created;
            total.adopted += r.adopted;
            total.resynced = r.resynced;
            total.planned.extend(r.planned);
            total.held = r.held;
            total.orphans += r.orphans;
            total.blocked = r.blocked.or(total.blocked);
        }
        Ok(total)
    }

    /// Opens this enrollment's state (the mirror in it is loaded per cycle). A state of another
    /// enrollment is set aside: the note says so, and is logged here once.
    pub fn open_state(&self, opts: &RunOptions) -> Result<(State, Option<String>), StateError> {
        let started = Instant::now();
        #[cfg(windows)]
        if let Err(why) = check_acl(
            &opts.state_dir,
            ad_sync_core::install::access::Installed::State,
        ) {
            return Err(StateError::Io {
                path: opts.state_dir.clone(),
                source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, why),
            });
        }
        let (state, note) = State::open_bound(&opts.state_dir, &self.binding())?;
        tracing::debug!(target: "ad_sync_agent::phase", "state check (open, enrollment binding): {:.4} s", started.elapsed().as_secs_f64());
        if let Some(n) = &note {
            tracing::warn!(event = logs::event::SET_ASIDE, "{n}");
        }
        Ok((state, note))
    }

    /// The enrollment this agent is: its credential, its cloud and its AD domain.
    pub fn binding(&self) -> state::Binding {
        let cloud = self
            .answers
            .cloud
            .as_ref()
            .and_then(|c| c.url.clone())
            .unwrap_or_default();
        let domain = ad_sync_core::adopt::Scope::from_answers(&self.answers)
            .ok()
            .and_then(|s| s.domain_dn())
            .map(|d| d.to_comma_form())
            .unwrap_or_default();
        state::Binding::new(&self.credential, &cloud, &domain)
    }

    /// Heartbeats until `stop` resolves; on the primary, a sync cycle after each heartbeat. A
    /// failed heartbeat or cycle is logged and retried with backoff (up to the interval); the
    /// agent never exits because the cloud or the DC is away.
    pub async fn run(
        &self,
        opts: &RunOptions,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), AgentError> {
        tokio::pin!(stop);
        let (mut state, set_aside) = self.open_state(opts)?;
        let mut interval = Duration::from_secs(30);
        let mut backoff = Duration::from_secs(1);
        let mut last_role = None;
        // A state set aside is told to the cloud with the first heartbeat.
        let mut problem: Option<String> = set_aside;
        let mut last_resync: Option<Instant> = None;
        let mut last_export_resync: Option<Instant> = None;
        let mut last_held = 0;
        loop {
            // The step (a heartbeat, and a cycle on the primary) is cancelled when a stop is
            // asked, wherever it waits: a service stops at once, not after a DC's or the
            // cloud's time limit. A cycle cut short is a crash at that point, which the state
            // is made for: nothing of it was committed, and the next start resumes it.
            let step = async {
                let health = Some(Agent::run_health(&state));
                let beat = Instant::now();
                let answer = self.heartbeat_with(problem.as_deref(), health).await;
                let heartbeat_ms = export::ms(beat);
                record_contact(
                    &mut state,
                    answer.as_ref().map(|a| a.0).map_err(|e| e.to_string()),
                );
                match answer {
                    Ok((role, every)) => {
                        if last_role != Some(role) {
                            tracing::info!(role = ?role, "the cloud gives this agent the {} role", if role == Role::Primary { "primary" } else { "standby" });
                            if role == Role::Primary {
                                // Taking over (or starting): compare everything with AD first.
                                last_resync = None;
                            }
                            last_role = Some(role);
                        }
                        interval = every;
                        let direction = self.answers.sync.direction;
                        let mut export_problem = None;
                        if role == Role::Primary && direction.from_ad() {
                            // AD's changes to the cloud first: the cloud → AD cycle after it
                            // then sees the cloud as AD left it.
                            let exported = self
                                .export_and_record(
                                    &mut state,
                                    &export::ExportOptions {
                                        resync: opts.resync && last_export_resync.is_none(),
                                        heartbeat_ms,
                                        ..Default::default()
                                    },
                                )
                                .await;
                            if exported.as_ref().is_ok_and(|r| r.reconciled) {
                                last_export_resync = Some(Instant::now());
                            }
                            if let Err(e) = &exported {
                                tracing::error!(event = logs::event::EXPORT_FAILED, "{e}");
                            }
                            export_problem = exported
                                .as_ref()
                                .err()
                                .map(|e| format!("sending AD's changes to the cloud: {e}"));
                            if !direction.to_ad() {
                                return match exported {
                                    Ok(_) => {
                                        problem = None;
                                        backoff = Duration::from_secs(1);
                                        interval
                                    }
                                    Err(_) => {
                                        problem = export_problem;
                                        backoff = (backoff * 2).min(interval);
                                        backoff
                                    }
                                };
                            }
                        }
                        if role == Role::Primary && direction.to_ad() {
                            let resync = opts.resync && last_resync.is_none()
                                || last_resync.is_none_or(|t| t.elapsed() >= RESYNC_EVERY);
                            match self.cycle(&mut state, opts, resync).await {
                                Ok(r) => {
                                    if r.resynced {
                                        last_resync = Some(Instant::now());
                                    }
                                    // Said once each time the held list grows, not every run.
                                    if r.held > last_held {
                                        tracing::warn!(
                                            event = logs::event::HELD,
                                            "{} disconnections are held by the deletion threshold; review them with ad-sync-agent pending",
                                            r.held
                                        );
                                    }
                                    last_held = r.held;
                                    problem = export_problem.clone();
                                    if r.more && problem.is_none() {
                                        // A capped run: the rest of the feed now, not in
                                        // an interval (a first sync is many runs).
                                        tracing::debug!(
                                            changes = r.changes,
                                            "the cloud has more changes: the next run follows at once"
                                        );
                                        backoff = Duration::from_secs(1);
                                        Duration::ZERO
                                    } else if problem.is_none() {
                                        backoff = Duration::from_secs(1);
                                        interval
                                    } else {
                                        backoff = (backoff * 2).min(interval);
                                        backoff
                                    }
                                }
                                Err(e) => {
                                    tracing::error!(event = logs::event::RUN_FAILED, "{e}");
                                    problem = Some(match &export_problem {
                                        Some(x) => format!("{e}; {x}"),
                                        None => e.to_string(),
                                    });
                                    backoff = (backoff * 2).min(interval);
                                    backoff
                                }
                            }
                        } else {
                            backoff = Duration::from_secs(1);
                            interval
                        }
                    }
                    Err(e) => {
                        tracing::warn!(event = logs::event::CLOUD_UNREACHABLE, "{e}");
                        backoff = (backoff * 2).min(interval);
                        backoff
                    }
                }
            };
            let wait = tokio::select! {
                _ = &mut stop => {
                    tracing::info!("stop asked: the step under way is cancelled; the next start resumes it");
                    return Ok(());
                }
                wait = step => wait,
            };
            let next = tokio::time::Instant::now() + wait;
            if wait >= idle::GIVE_BACK_BEFORE {
                // Once the step's leftovers are done (its connection to the cloud closes when
                // idle), memory goes back to the system for the rest of the wait.
                tokio::select! {
                    _ = &mut stop => return Ok(()),
                    _ = tokio::time::sleep(idle::SETTLE) => {}
                }
                idle::give_back();
            }
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = tokio::time::sleep_until(next) => {}
            }
        }
    }
}

/// Records how the agent's last call to the cloud went, for `status` (a state that cannot be
/// written is logged, never fatal).
pub fn record_contact(state: &mut State, answer: Result<Role, String>) {
    let contact = state::Contact {
        at: ad_sync_core::time_fmt::now_unix(),
        answered: answer.is_ok(),
        role: answer.as_ref().ok().map(|r| {
            match r {
                Role::Primary => "primary",
                Role::Standby => "standby",
            }
            .to_string()
        }),
        error: answer.err(),
    };
    if let Err(e) = state.record_contact(&contact) {
        tracing::warn!("the cloud's answer could not be recorded for `status`: {e}");
    }
}

/// The heartbeat interval the cloud asks for, kept within 5 s and 1 h: a cloud that says 0
/// would have the agent call in without pause, one that says a year would hide it.
pub fn heartbeat_interval(seconds: u64) -> Duration {
    Duration::from_secs(seconds.clamp(MIN_HEARTBEAT_SECS, MAX_HEARTBEAT_SECS))
}

const MIN_HEARTBEAT_SECS: u64 = 5;
const MAX_HEARTBEAT_SECS: u64 = 3600;

/// Why a page of changes cannot be taken, if it cannot.
pub fn page_problem(
    after: i64,
    page: &ad_sync_core::cloud::api::ChangesResponse,
) -> Option<String> {
    let mut last = after;
    for c in &page.changes {
        if c.seq <= last {
            return Some(format!(
                "the cloud sent change {} after {last} (changes must come in order, after the cursor)",
                c.seq
            ));
        }
        last = c.seq;
    }
    if page.cursor != last {
        return Some(format!(
            "the cloud's cursor {} is not its last change {last}",
            page.cursor
        ));
    }
    if page.more && page.changes.is_empty() {
        return Some("the cloud said there were more changes but sent none".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use ad_sync_core::cloud::api::{Change, ChangeBody, ChangesResponse};

    fn page(seqs: &[i64], cursor: i64, more: bool) -> ChangesResponse {
        ChangesResponse {
            changes: seqs
                .iter()
                .map(|&seq| Change {
                    seq,
                    at: String::new(),
                    body: ChangeBody::GroupRemove {
                        id: "g".into(),
                        name: "g".into(),
                    },
                })
                .collect(),
            cursor,
            more,
            head: None,
        }
    }

    #[test]
    fn a_page_that_does_not_move_forward_is_refused() {
        let cases: &[(&str, i64, ChangesResponse, bool)] = &[
            (
                "in order, cursor at the last",
                3,
                page(&[4, 7], 7, true),
                true,
            ),
            ("nothing new, nothing more", 3, page(&[], 3, false), true),
            ("more without any change", 3, page(&[], 3, true), false),
            (
                "a change at or before the cursor",
                3,
                page(&[3, 4], 4, false),
                false,
            ),
            ("out of order", 3, page(&[5, 4], 5, false), false),
            ("the cursor going back", 3, page(&[], 1, false), false),
            (
                "a cursor past the last change",
                3,
                page(&[4], 9, true),
                false,
            ),
        ];
        for (name, after, p, ok) in cases {
            assert_eq!(page_problem(*after, p).is_none(), *ok, "{name}");
        }
    }

    #[test]
    fn the_heartbeat_interval_is_kept_within_bounds() {
        assert_eq!(heartbeat_interval(0), Duration::from_secs(5));
        assert_eq!(heartbeat_interval(30), Duration::from_secs(30));
        assert_eq!(heartbeat_interval(u64::MAX), Duration::from_secs(3600));
    }
}
