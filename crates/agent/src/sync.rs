//! One sync run, executed: look up what the run is about in AD, ask the planner (`plan`) what
//! to do, do it (concurrently across objects and in order within each), learn the objectGUIDs
//! of what was created, and roll the outcomes up into the changes' results.
//!
//! Every operation is planned from AD's current state, so running the same work twice (after a
//! crash, an outage, a failover) does nothing the second time. The decisions are all in `plan`
//! (pure, table-tested); this module only runs them against a `Directory`.

use crate::ad::{self, Ad, AdError, Obj};
use crate::mirror::{Mirror, ObjKey, Work};
use crate::plan::{self, Change, Found, Input, Job, Lookup, Op, Outcome, Outcomes, Scope};
use ad_sync_core::answers::Sync;
use ad_sync_core::cloud::api::ChangeResult;
use ad_sync_core::progress::Phase;
use ad_sync_core::secret::Secret;
use ad_sync_core::tier0::Tier0;
use ldap3::Mod;
use std::collections::HashSet;

#[derive(Clone)]
pub struct Settings {
    pub policy: Sync,
    pub dry_run: bool,
    /// Overrides the deletion budget for one run (`--allow-deletions N`).
    pub allow_deletions: Option<usize>,
    /// Disconnections the administrator approved (`pending --approve`).
    pub approved: HashSet<ObjKey>,
    /// The AD objects this agent's own import linked (its state).
    pub consented: HashSet<Vec<u8>>,
    /// Disconnections made within the budget's window before this run (its state).
    pub spent: usize,
    pub concurrency: usize,
    /// Where the run's progress goes.
    pub meter: crate::progress::Meter,
    /// Who holds power in the domain, read once for all the passes of one run that goes
    /// through the state a page at a time (`compare_all`); `None`: `reconcile` reads it.
    pub tier0: Option<std::sync::Arc<Tier0>>,
}

/// Why a run stopped. Nothing of it is committed; the same work is retried later.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// AD or the cloud is away.
    #[error("{0}")]
    Unavailable(String),
    /// The agent's state could not be read or written.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

pub struct Report {
    pub results: Vec<ChangeResult>,
    pub operations: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Users and groups created (planned, in a dry run).
    pub created: usize,
    /// Existing AD objects taken over (planned, in a dry run).
    pub adopted: usize,
    pub planned: Vec<String>,
    /// Disconnections held back by the deletion budget.
    pub held: Vec<plan::HeldJob>,
    /// Disconnections this run made (none in a dry run): what the budget records.
    pub disconnected: Vec<(ObjKey, plan::Action)>,
    pub blocked: Option<plan::OverThreshold>,
}

/// What the executor needs of AD: search, read one object, and the four writes. `Ad` is the
/// LDAP one; a refusal is `AdError::Refused`, the DC going away `AdError::Unavailable`.
pub trait Directory {
    fn scope(&self) -> &Scope;
    /// Every object matching any of the filter terms, anywhere in the domain, with these of
    /// its attributes (`ad::ATTRS`: all the planner reads).
    fn find_any(
        &self,
        terms: Vec<String>,
        attrs: &'static [&'static str],
    ) -> impl Future<Output = Result<Vec<Obj>, AdError>>;
    fn read(&self, dn: &str) -> impl Future<Output = Result<Option<Obj>, AdError>>;
    fn add(
        &self,
        dn: &str,
        attrs: Vec<(String, HashSet<Vec<u8>>)>,
    ) -> impl Future<Output = Result<(), AdError>>;
    fn rename(&self, dn: &str, rdn: &str) -> impl Future<Output = Result<(), AdError>>;
    fn modify(
        &self,
        dn: &str,
        mods: Vec<Mod<Vec<u8>>>,
        what: &str,
    ) -> impl Future<Output = Result<(), AdError>>;
    fn delete(&self, dn: &str) -> impl Future<Output = Result<(), AdError>>;
    /// Tier 0: who holds power in the domain, read from its ACLs and groups.
    fn tier0(&self) -> impl Future<Output = Result<Tier0, AdError>>;
    /// Why a group already read (the sync group) hands privilege to its members, if it does.
    fn group_privilege(&self, group: &Obj)
    -> impl Future<Output = Result<Option<String>, AdError>>;
}

impl Directory for Ad {
    fn scope(&self) -> &Scope {
        &self.scope
    }
    async fn find_any(
        &self,
        terms: Vec<String>,
        attrs: &'static [&'static str],
    ) -> Result<Vec<Obj>, AdError> {
        Ad::find_any(self, terms, attrs).await
    }
    async fn read(&self, dn: &str) -> Result<Option<Obj>, AdError> {
        Ad::read(self, dn).await
    }
    async fn add(&self, dn: &str, attrs: Vec<(String, HashSet<Vec<u8>>)>) -> Result<(), AdError> {
        Ad::add(self, dn, attrs).await
    }
    async fn rename(&self, dn: &str, rdn: &str) -> Result<(), AdError> {
        Ad::rename(self, dn, rdn).await
    }
    async fn modify(&self, dn: &str, mods: Vec<Mod<Vec<u8>>>, what: &str) -> Result<(), AdError> {
        Ad::modify(self, dn, mods, what).await
    }
    async fn delete(&self, dn: &str) -> Result<(), AdError> {
        Ad::delete(self, dn).await
    }
    async fn tier0(&self) -> Result<Tier0, AdError> {
        Ad::tier0(self).await
    }
    async fn group_privilege(&self, group: &Obj) -> Result<Option<String>, AdError> {
        Ad::group_privilege(self, group).await
    }
}

fn unavailable(e: AdError) -> RunError {
    RunError::Unavailable(e.to_string())
}

/// Which of the named members the groups read without their members hold: read from the
/// members' `memberOf` (those the run read already, and the others by objectGUID, 100 a
/// search), and asked one by one for a member whose `memberOf` AD sent in ranges.
async fn named_members<D: Directory>(
    ad: &D,
    lookup: &Lookup,
    found: &[Obj],
    slim: &mut [Obj],
) -> Result<(), RunError> {
    let wanted = lookup.named_guids(found);
    let have: HashSet<&[u8]> = found.iter().map(|o| o.guid.as_slice()).collect();
    let terms: Vec<String> = wanted
        .iter()
        .filter(|g| !have.contains(g.as_slice()))
        .map(|g| ad::guid_filter(g))
        .collect();
    let read = if terms.is_empty() {
        Vec::new()
    } else {
        ad.find_any(terms, ad::MEMBER_OF_ATTRS)
            .await
            .map_err(unavailable)?
    };
    let members: Vec<&Obj> = found
        .iter()
        .filter(|o| wanted.contains(&o.guid))
        .chain(&read)
        .collect();
    for (gi, member) in plan::named_members_of(slim, lookup, &members) {
        let term = format!(
            "(&{}{})",
            ad::guid_filter(&member),
            ad::eq("memberOf", &slim[gi].dn)
        );
        if let Some(m) = ad
            .find_any(vec![term], ad::MEMBER_OF_ATTRS)
            .await
            .map_err(unavailable)?
            .into_iter()
            .next()
        {
            slim[gi].members.push((m.guid, m.dn));
        }
    }
    Ok(())
}

/// Who holds power in the domain, read afresh. A read the DC refuses leaves the decision
/// unproven (everything refused).
pub async fn read_tier0<D: Directory>(ad: &D) -> Result<Tier0, RunError> {
    match ad.tier0().await {
        Ok(t) => Ok(t),
        Err(AdError::Refused { message, .. }) => Ok(Tier0::unknown(format!(
            "who holds power in the domain could not be read ({message})"
        ))),
        Err(e) => Err(unavailable(e)),
    }
}

/// Brings AD to the mirror for everything in `work`. `before` is the mirror before the fold
/// (for what was managed). Updates objectGUIDs in `mirror` for objects created or adopted.
pub async fn reconcile<D: Directory>(
    ad: &D,
    mirror: &mut Mirror,
    before: &Mirror,
    work: &Work,
    private_key: Option<&Secret>,
    s: &Settings,
) -> Result<Report, RunError> {
    let mut clock = std::time::Instant::now();
    let mut phase = |name: &str| {
        tracing::debug!(target: "ad_sync_agent::phase", "{name}: {:.2} s", clock.elapsed().as_secs_f64());
        clock = std::time::Instant::now();
    };

    // ---- look up everything this run is about ------------------------------------------------
    s.meter.phase(Phase::ReadingAd, None);
    let lookup = Lookup::new(mirror, work, &s.policy, ad.scope());
    let mut sync_group = match &ad.scope().sync_group {
        Some(dn) if !lookup.groups.is_empty() => {
            ad.read(&dn.to_comma_form()).await.map_err(unavailable)?
        }
        _ => None,
    };
    // Every new cloud group goes into the sync group: one that is privileged, or in a
    // privileged group at any depth, is never written (the planner fails the groups).
    if let Some(g) = sync_group.as_mut()
        && g.protected.is_none()
    {
        g.protected = match ad.group_privilege(g).await {
            Ok(why) => why,
            Err(AdError::Refused { message, .. }) => Some(format!(
                "the groups it is in could not be read to prove none is privileged ({message})"
            )),
            Err(e) => return Err(unavailable(e)),
        };
    }
    let mut objs = if lookup.terms.is_empty() {
        Vec::new()
    } else {
        ad.find_any(lookup.terms.clone(), ad::ATTRS)
            .await
            .map_err(unavailable)?
    };
    let mut slim = if lookup.named.is_empty() {
        Vec::new()
    } else {
        ad.find_any(lookup.slim_terms(), ad::SLIM_GROUP_ATTRS)
            .await
            .map_err(unavailable)?
    };
    phase("look up");
    let seen: HashSet<Vec<u8>> = objs.iter().chain(&slim).map(|o| o.guid.clone()).collect();
    let again = lookup.again(&objs, &slim);
    if !again.is_empty() {
        for o in ad.find_any(again, ad::ATTRS).await.map_err(unavailable)? {
            if !seen.contains(&o.guid) {
                objs.push(o);
            }
        }
    }
    if !slim.is_empty() {
        named_members(ad, &lookup, &objs, &mut slim).await?;
        phase("named members");
    }
    objs.append(&mut slim);
    s.meter.tick(objs.len() as u64);
    let found = Found::new(objs);
    // Tier 0, read afresh in every run that has work (once for a run in passes): a managed
    // account nested into Domain Admins since the last run, or a group given WriteDACL on the
    // domain, is refused in the same run.
    let read_now;
    let tier0: &Tier0 = match &s.tier0 {
        _ if lookup.is_empty() => {
            read_now = Tier0::none();
            &read_now
        }
        Some(t) => t,
        None => {
            read_now = read_tier0(ad).await?;
            if let Some(why) = read_now.blanket() {
                tracing::warn!("no account is proven unprivileged, so none is written: {why}");
            }
            &read_now
        }
    };
    phase(&format!("tier0 ({} privileged)", tier0.len()));
    // The sync group hands its privileges to every cloud group put in it.
    if let Some(g) = sync_group.as_mut()
        && g.protected.is_none()
    {
        g.protected = tier0.why(g);
    }

    // ---- plan ---------------------------------------------------------------------------------
    let passwords = plan::open_passwords(work, private_key);
    let mut p = plan::plan(&Input {
        scope: ad.scope(),
        mirror,
        before,
        work,
        lookup: &lookup,
        found: &found,
        sync_group: sync_group.as_ref(),
        passwords: &passwords,
        policy: &s.policy,
        tier0,
        allow_deletions: s.allow_deletions,
        spent: s.spent,
        approved: &s.approved,
        consented: &s.consented,
    });
    if let Some(t) = &p.blocked {
        tracing::warn!(
            "deletion budget: this run would disconnect {} AD objects, {} were disconnected in the last {} hours, {} allowed (of {} managed); {} disconnections are held until approved (`ad-sync-agent pending --config FILE`), the rest is applied",
            t.planned,
            t.spent,
            t.window_hours,
            t.limit,
            t.managed,
            p.held.len()
        );
    }
    drop(passwords);
    for outcome in p.outcomes.values() {
        if let Outcome::Failed(why) = outcome {
            tracing::warn!("{why}");
        }
    }
    for note in &p.notes {
        tracing::info!("{note}");
    }
    let disconnecting: Vec<(ObjKey, plan::Action)> = p
        .users
        .iter()
        .chain(&p.removals)
        .filter_map(|j| j.disconnect.map(|a| (j, a)))
        .flat_map(|(j, a)| j.keys.iter().map(move |k| (k.clone(), a)))
        .collect();
    for (key, guid) in std::mem::take(&mut p.adopted) {
        mirror.set_guid(&key, guid);
    }
    let mut outcomes = std::mem::take(&mut p.outcomes);
    let mut planned = Vec::new();
    phase("plan");

    // ---- run: users, then groups, then memberships, then disconnections -----------------------
    // The total grows by the nesting and memberships, planned once the objects exist.
    let ops = |jobs: &[Job]| jobs.iter().map(|j| j.ops.len() as u64).sum::<u64>();
    s.meter.phase(
        Phase::Applying,
        Some(ops(&p.users) + ops(&p.groups) + ops(&p.removals)),
    );
    let mut ops_done = 0;
    ops_done += run_jobs(
        ad,
        std::mem::take(&mut p.users),
        s,
        &mut outcomes,
        &mut planned,
    )
    .await?;
    phase("users");
    let mut adopted = take_over(mirror, &p.adoptions, &outcomes, s.dry_run, true);
    if !s.dry_run && !p.created_users.is_empty() {
        learn_guids(ad, mirror, &p.created_users, true)
            .await
            .map_err(unavailable)?;
    }
    for id in plan::passwords_now_set(work, &outcomes) {
        if let Some(r) = mirror.users.get_mut(id) {
            r.password_set = true;
        }
    }
    phase("users' objectGUIDs");
    ops_done += run_jobs(
        ad,
        std::mem::take(&mut p.groups),
        s,
        &mut outcomes,
        &mut planned,
    )
    .await?;
    phase("groups");
    adopted += take_over(mirror, &p.adoptions, &outcomes, s.dry_run, false);
    if let Some(sync_group) = &sync_group {
        let jobs = plan::nest_new_groups(&p, sync_group, &outcomes, s.dry_run);
        s.meter.more(ops(&jobs));
        ops_done += run_jobs(ad, jobs, s, &mut outcomes, &mut planned).await?;
    }
    if !s.dry_run && !p.created_groups.is_empty() {
        learn_guids(ad, mirror, &p.created_groups, false)
            .await
            .map_err(unavailable)?;
    }
    let member_jobs = plan::memberships(
        mirror,
        work,
        &p,
        &lookup.groups,
        &mut outcomes,
        &s.policy,
        tier0,
    );
    phase("nesting, groups' objectGUIDs");
    s.meter.more(ops(&member_jobs));
    ops_done += run_jobs(ad, member_jobs, s, &mut outcomes, &mut planned).await?;
    phase("memberships");
    ops_done += run_jobs(
        ad,
        std::mem::take(&mut p.removals),
        s,
        &mut outcomes,
        &mut planned,
    )
    .await?;
    phase("disconnections");

    let (results, failed, skipped) = plan::results(work, &outcomes);
    let disconnected = disconnecting
        .into_iter()
        .filter(|(k, _)| {
            !s.dry_run && matches!(outcomes.get(k), Some(Outcome::Done | Outcome::Adopted(_)))
        })
        .collect();
    let created = p
        .created_users
        .iter()
        .map(|id| ObjKey::User(id.clone()))
        .chain(p.created_groups.iter().map(|id| ObjKey::Group(id.clone())))
        .filter(|k| s.dry_run || matches!(outcomes.get(k), Some(Outcome::Done)))
        .count();
    Ok(Report {
        results,
        operations: ops_done,
        failed,
        skipped,
        created,
        adopted,
        planned,
        held: std::mem::take(&mut p.held),
        disconnected,
        blocked: p.blocked.take(),
    })
}

/// A job, how many of its operations were done, and the failure that stopped it (with whether
/// the failed operation was the password).
type JobEnd = (Job, usize, Result<(), (AdError, bool)>);

/// Runs jobs concurrently (each job's operations in order). A refusal fails that job's object
/// and skips the rest of its operations; the DC going away stops the run.
async fn run_jobs<D: Directory>(
    ad: &D,
    jobs: Vec<Job>,
    s: &Settings,
    outcomes: &mut Outcomes,
    planned: &mut Vec<String>,
) -> Result<usize, RunError> {
    use futures_util::StreamExt;
    if s.dry_run {
        for j in &jobs {
            for op in &j.ops {
                tracing::info!("dry run: would {}", op.what);
                planned.push(op.what.clone());
                s.meter.tick(1);
            }
        }
        return Ok(0);
    }
    let results: Vec<JobEnd> = futures_util::stream::iter(jobs)
        .map(|job| async move {
            let mut done = 0;
            for op in &job.ops {
                match execute(ad, op).await {
                    Ok(()) => {
                        tracing::info!("{}", op.what);
                        done += 1;
                        s.meter.tick(1);
                    }
                    Err(e) if e.rc().is_some_and(|rc| op.already_so(rc)) => {
                        tracing::debug!("{}: already so ({e})", op.what);
                        s.meter.tick(1);
                    }
                    Err(e) => {
                        let pw = op.kind == plan::OpKind::SetPassword;
                        return (job, done, Err((e, pw)));
                    }
                }
            }
            (job, done, Ok(()))
        })
        .buffer_unordered(s.concurrency.max(1))
        .collect()
        .await;
    let mut total = 0;
    let mut away = None;
    for (job, done, r) in results {
        total += done;
        match r {
            Ok(()) => {
                for k in job.keys {
                    outcomes.entry(k).or_insert(Outcome::Done);
                }
                if let Some(k) = job.password_key {
                    outcomes.entry(k).or_insert(Outcome::Done);
                }
            }
            Err((AdError::Unavailable(m), _)) => away = Some(m),
            Err((e, pw_only)) => {
                let msg = e.to_string();
                tracing::warn!("{msg}");
                // A refused password (complexity, history) fails the password change only:
                // the account's other changes were made before it.
                if pw_only {
                    if let Some(k) = job.password_key {
                        outcomes.insert(k, Outcome::Failed(msg));
                    }
                } else {
                    for k in job.keys {
                        outcomes.insert(k, Outcome::Failed(msg.clone()));
                    }
                    if let Some(k) = job.password_key {
                        outcomes.insert(k, Outcome::Failed(format!("not set: {msg}")));
                    }
                }
            }
        }
    }
    match away {
        Some(m) => Err(RunError::Unavailable(format!(
            "the domain controller is not available: {m}"
        ))),
        None => Ok(total),
    }
}

/// Records in the mirror the users (or groups) taken over whose jobs succeeded, with whether
/// AD has their password. Returns how many; in a dry run, how many would be.
fn take_over(
    mirror: &mut Mirror,
    adoptions: &[plan::Adoption],
    outcomes: &Outcomes,
    dry_run: bool,
    users: bool,
) -> usize {
    let mut n = 0;
    for a in adoptions {
        if matches!(a.key, ObjKey::User(_)) != users {
            continue;
        }
        let done = matches!(outcomes.get(&a.key), Some(Outcome::Adopted(_)));
        let recorded = match &a.key {
            ObjKey::User(id) => mirror
                .users
                .get(id)
                .is_some_and(|u| u.guid.as_ref() == Some(&a.guid)),
            ObjKey::Group(id) => mirror
                .groups
                .get(id)
                .is_some_and(|g| g.guid.as_ref() == Some(&a.guid)),
            ObjKey::Password(_) => true,
        };
        if !done || recorded {
            continue;
        }
        n += 1;
        if dry_run {
            continue;
        }
        tracing::info!("adopted {} (it is managed from now on)", a.dn);
        mirror.set_guid(&a.key, a.guid.clone());
        if let (ObjKey::User(id), true) = (&a.key, a.has_password)
            && let Some(u) = mirror.users.get_mut(id)
        {
            u.password_set = true;
        }
    }
    n
}

/// Makes one operation's LDAP request.
async fn execute<D: Directory>(ad: &D, op: &Op) -> Result<(), AdError> {
    match &op.change {
        Change::Add(attrs) => ad.add(&op.dn, attrs.clone()).await,
        Change::Rename(rdn) => ad.rename(&op.dn, rdn).await,
        Change::Modify(mods) => ad.modify(&op.dn, mods.clone(), &op.what).await,
        Change::Delete => ad.delete(&op.dn).await,
    }
}

/// Reads the objectGUIDs of objects just created (by name; the marker says whose they are).
async fn learn_guids<D: Directory>(
    ad: &D,
    mirror: &mut Mirror,
    ids: &[String],
    users: bool,
) -> Result<(), AdError> {
    let terms = ids
        .iter()
        .filter_map(|id| {
            if users {
                mirror.users.get(id).map(|u| u.user.username.as_str())
            } else {
                mirror.groups.get(id).map(|g| g.name.as_str())
            }
        })
        .map(|name| ad::eq("sAMAccountName", name))
        .collect();
    for o in ad.find_any(terms, ad::ATTRS).await? {
        let Some(id) = o.marker_id() else { continue };
        let key = if users {
            ObjKey::User(id.to_string())
        } else {
            ObjKey::Group(id.to_string())
        };
        mirror.set_guid(&key, o.guid);
    }
    Ok(())
}
