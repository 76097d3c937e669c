//! The run's decisions, made without touching anything: from what the fold says must be looked
//! at (`Work`), the mirror, the AD objects found for it and the policies, the operations that
//! bring AD to the mirror, the outcomes decided without running anything (protected, moved,
//! colliding, a password that cannot be used), the deletions and the threshold.
//!
//! Pure: no AD, no clock, no logging. `sync` runs what this returns against AD (behind the
//! narrow `sync::Directory` trait) and asks again where a later step depends on an earlier
//! one's result (new objects' objectGUIDs, which groups were created). Every policy and safety
//! rule here has a table test on recorded AD objects (tests at the bottom).

use crate::ad::{GROUP_TYPE_GLOBAL_SECURITY, MARKER_PREFIX, Obj, UAC_DISABLED, UAC_NORMAL};
use crate::mirror::{Mirror, ObjKey, Work};
use ad_sync_core::adopt::{Kind, Link, Refusal, Rules};
use ad_sync_core::answers::{GroupDisconnection, MembershipSyncType, Sync, UserDisconnection};
use ad_sync_core::cloud::api::{AdLink, ApplyStatus, ChangeResult, MemberType, link_for};
use ad_sync_core::directory::object::parse_guid_string;
use ad_sync_core::dn::escape_rdn_value;
use ad_sync_core::secret::Secret;
use ad_sync_core::tier0::Tier0;
use ldap3::Mod;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

pub use ad_sync_core::adopt::Scope;

/// What an operation is for. The executor decides by this, never by the operation's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// The marker written on an existing AD object: from now on the agent manages it.
    Adopt,
    CreateUser,
    CreateGroup,
    Rename,
    /// Names, mail, the marker.
    UpdateAttributes,
    SetPassword,
    Disable,
    Enable,
    Unlock,
    /// Put groups into the sync group.
    NestInSyncGroup,
    /// A managed group's members brought to the mirror (adds and removes).
    Members,
    /// A disconnected user taken out of a managed group.
    RemoveMembership,
    DeleteUser,
    DeleteGroup,
    /// The marker removed: the object is no longer managed (retain, or disable).
    Release,
}

/// The LDAP request an operation makes.
#[derive(Clone)]
pub enum Change {
    Add(Vec<(String, HashSet<Vec<u8>>)>),
    /// A new RDN in the same container.
    Rename(String),
    Modify(Vec<Mod<Vec<u8>>>),
    Delete,
}

/// One planned AD operation.
#[derive(Clone)]
pub struct Op {
    pub kind: OpKind,
    pub dn: String,
    pub change: Change,
    /// What it does, for the log and `--dry-run`.
    pub what: String,
}

impl Op {
    fn modify(kind: OpKind, dn: &str, mods: Vec<Mod<Vec<u8>>>, what: String) -> Op {
        Op {
            kind,
            dn: dn.to_string(),
            change: Change::Modify(mods),
            what,
        }
    }

    /// AD answering this LDAP result code means the operation's aim already holds: a member
    /// already there (20, attributeOrValueExists) or already gone (16, noSuchAttribute).
    pub fn already_so(&self, rc: u32) -> bool {
        self.kind == OpKind::Members && matches!(rc, 20 | 16)
    }
}

impl std::fmt::Debug for Op {
    // The attributes are left out: a password's value is in them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {}: {}", self.kind, self.dn, self.what)
    }
}

/// The operations for one object, in order, and the keys whose outcome they decide.
#[derive(Debug, Clone)]
pub struct Job {
    pub keys: Vec<ObjKey>,
    pub ops: Vec<Op>,
    /// A password change in this job (its key fails alone if only the password is refused).
    pub password_key: Option<ObjKey>,
    /// What the job disconnects, when it does (what the deletion budget counts).
    pub disconnect: Option<Action>,
}

/// What a disconnection does to its AD object: the one record the planner, the state and
/// `pending` share. Every kind counts against the deletion budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The object is deleted (disconnection policy `remove`).
    Delete,
    /// The account is disabled and no longer managed (`disable`).
    Disable,
    /// The object is kept as it is and no longer managed (`retain`).
    Release,
    /// A managed account the cloud suspended is disabled (it stays managed).
    Suspend,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Delete => "delete",
            Action::Disable => "disable",
            Action::Release => "release",
            Action::Suspend => "suspend",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one object ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// An existing AD object (this DN) was taken over; then as `Done`.
    Adopted(String),
    Skipped(String),
    Failed(String),
}

pub type Outcomes = HashMap<ObjKey, Outcome>;

/// More deletions than the threshold allows: nothing is to be changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OverThreshold {
    /// Disconnections this run would make (not approved ones).
    pub planned: usize,
    /// Disconnections already made within the window.
    pub spent: usize,
    pub limit: usize,
    pub managed: usize,
    pub window_hours: u32,
}

fn set(v: impl Into<Vec<u8>>) -> HashSet<Vec<u8>> {
    HashSet::from([v.into()])
}

pub fn marker(id: &str) -> String {
    format!("{MARKER_PREFIX}{id}")
}

/// Removes the agent's marker: the object is no longer managed.
fn unmark() -> Mod<Vec<u8>> {
    Mod::Replace(b"adminDescription".to_vec(), HashSet::new())
}

/// `<GUID=…>`: a member named by objectGUID, which stays right when it is renamed in the run.
fn guid_ref(guid: &[u8]) -> Vec<u8> {
    format!("<GUID={}>", crate::ad::guid_string(guid)).into_bytes()
}

/// A cloud object to find in AD: its objectGUID when known, its name, and the objectGUID of
/// the AD object an import linked it to.
type Subject<'a> = (Option<&'a Vec<u8>>, &'a str, Option<Vec<u8>>);

/// A member a membership change named: its cloud id, and its objectGUID when the mirror knows
/// it.
pub type NamedMember = (String, Option<Vec<u8>>);

/// What to look up in AD before planning: groups whose AD members change, and the search terms
/// that find every object this run is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// Groups whose AD members change: those the fold touched and, in match mode, every group
    /// that contains one of them (their users are direct members there too).
    pub groups: BTreeSet<String>,
    /// Objects with a known objectGUID by that alone; the others by sAMAccountName, which finds
    /// the agent's own object (it carries the marker) or a collision. Only indexed attributes
    /// are searched: a filter on adminDescription would make the DC scan every object.
    pub terms: Vec<String>,
    /// The groups AD has that only membership changes named (not in match mode), by
    /// objectGUID, with the members the changes named: (cloud id, their objectGUID when the
    /// mirror knows it). Such a group is read without its `member` list (`slim_terms`), which
    /// can hold the whole directory; which of the named members it holds comes from those
    /// members' `memberOf` (`named_members_of`).
    pub named: HashMap<Vec<u8>, Vec<NamedMember>>,
    /// (objectGUID, name) of the subjects that had a GUID, for `again`.
    with_guid: Vec<(Vec<u8>, String)>,
}

impl Lookup {
    pub fn new(mirror: &Mirror, work: &Work, policy: &Sync, scope: &Scope) -> Lookup {
        let mut groups = work.groups.clone();
        let match_mode = policy.group_membership_sync_type == MembershipSyncType::Match;
        if match_mode {
            for g in &work.groups {
                groups.extend(mirror.ancestors(g));
            }
        }
        let mut named = HashMap::new();
        let mut slim = Vec::new();
        let mut whole = Vec::new();
        for id in &groups {
            let Some(g) = mirror.groups.get(id) else {
                continue;
            };
            match (&g.guid, work.delta(id).filter(|_| !match_mode)) {
                (Some(guid), Some(delta)) => {
                    slim.push((guid.clone(), g.name.clone()));
                    let guid_of = |t: MemberType, m: &str| match t {
                        MemberType::User => mirror.users.get(m).and_then(|u| u.guid.clone()),
                        MemberType::Group => mirror.groups.get(m).and_then(|g| g.guid.clone()),
                    };
                    named.insert(
                        guid.clone(),
                        delta
                            .iter()
                            .map(|(t, m)| (m.clone(), guid_of(*t, m)))
                            .collect(),
                    );
                }
                _ => whole.push(g),
            }
        }
        let subjects: Vec<Subject> = work
            .users
            .iter()
            .filter_map(|id| mirror.users.get(id))
            .map(|u| {
                (
                    u.guid.as_ref(),
                    u.user.username.as_str(),
                    link_guid(&u.user.links, scope),
                )
            })
            .chain(
                whole
                    .into_iter()
                    .map(|g| (g.guid.as_ref(), g.name.as_str(), link_guid(&g.links, scope))),
            )
            .collect();
        let mut terms = Vec::new();
        for (guid, name, link) in &subjects {
            match guid {
                Some(g) => terms.push(crate::ad::guid_filter(g)),
                None => {
                    terms.push(by_name(name));
                    if let Some(l) = link {
                        terms.push(crate::ad::guid_filter(l));
                    }
                }
            }
        }
        terms.extend(
            work.removed_users
                .iter()
                .filter_map(|u| u.guid.as_ref())
                .chain(work.removed_groups.iter().filter_map(|g| g.guid.as_ref()))
                .map(|g| crate::ad::guid_filter(g)),
        );
        let with_guid = subjects
            .iter()
            .filter_map(|(g, name, _)| g.map(|g| (g.clone(), name.to_string())))
            .chain(slim)
            .collect();
        Lookup {
            groups,
            terms,
            named,
            with_guid,
        }
    }

    /// Whether the run has anything to look up in AD.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty() && self.named.is_empty()
    }

    /// Terms for the groups read without their members: each of `named` by objectGUID.
    pub fn slim_terms(&self) -> Vec<String> {
        self.named
            .keys()
            .map(|g| crate::ad::guid_filter(g))
            .collect()
    }

    /// The objectGUIDs whose `memberOf` tells which named members the slim groups hold: the
    /// mirror's, and that of an object found by the named member's marker (re-created by hand,
    /// so the mirror's objectGUID is stale).
    pub fn named_guids(&self, found: &[Obj]) -> HashSet<Vec<u8>> {
        let by_marker: HashMap<&str, &[u8]> = found
            .iter()
            .filter_map(|o| o.marker_id().map(|m| (m, o.guid.as_slice())))
            .collect();
        self.named
            .values()
            .flatten()
            .flat_map(|(id, guid)| {
                guid.clone()
                    .into_iter()
                    .chain(by_marker.get(id.as_str()).map(|g| g.to_vec()))
            })
            .collect()
    }

    /// Terms for a second search: by name for every subject whose objectGUID AD no longer has
    /// (deleted and re-created by hand, or restored), which finds it again by its marker.
    pub fn again(&self, found: &[Obj], slim: &[Obj]) -> Vec<String> {
        let seen: HashSet<&[u8]> = found
            .iter()
            .chain(slim)
            .map(|o| o.guid.as_slice())
            .collect();
        self.with_guid
            .iter()
            .filter(|(g, _)| !seen.contains(g.as_slice()))
            .map(|(_, name)| by_name(name))
            .collect()
    }
}

/// Fills the members of the groups read without them (`Lookup::slim_terms`): each member the
/// run's changes named whose `memberOf` holds the group. Returns the (group, member) pairs a
/// partial `memberOf` leaves unanswered (more than AD's MaxValRange of groups): the caller asks
/// AD about each.
pub fn named_members_of(
    slim: &mut [Obj],
    lookup: &Lookup,
    members: &[&Obj],
) -> Vec<(usize, Vec<u8>)> {
    let index: HashMap<Vec<u8>, usize> = slim
        .iter()
        .enumerate()
        .filter(|(_, g)| lookup.named.contains_key(&g.guid))
        .map(|(i, g)| (g.guid.clone(), i))
        .collect();
    for g in slim.iter_mut().filter(|g| index.contains_key(&g.guid)) {
        g.members.clear();
    }
    let by_marker: HashMap<&str, &[u8]> = members
        .iter()
        .filter_map(|o| o.marker_id().map(|m| (m, o.guid.as_slice())))
        .collect();
    let mut unanswered = Vec::new();
    for (gguid, named) in &lookup.named {
        let Some(&gi) = index.get(gguid) else {
            continue;
        };
        let guids: HashSet<&[u8]> = named
            .iter()
            .flat_map(|(id, guid)| {
                guid.as_deref()
                    .into_iter()
                    .chain(by_marker.get(id.as_str()).copied())
            })
            .collect();
        for m in members.iter().filter(|m| guids.contains(m.guid.as_slice())) {
            if m.member_of.iter().any(|(g, _)| g == gguid) {
                slim[gi].members.push((m.guid.clone(), m.dn.clone()));
            } else if m.member_of_partial {
                unanswered.push((gi, m.guid.clone()));
            }
        }
    }
    unanswered
}

fn by_name(name: &str) -> String {
    crate::ad::eq("sAMAccountName", name)
}

/// The objectGUID of the AD object the cloud linked an object to in this domain (an import).
pub fn link_guid(links: &[AdLink], scope: &Scope) -> Option<Vec<u8>> {
    let domain = scope.domain_dn()?;
    link_for(links, &domain).and_then(|l| parse_guid_string(&l.guid))
}

/// The AD objects found for a run, indexed the ways the planner asks for them.
pub struct Found {
    objs: Vec<Obj>,
    by_guid: HashMap<Vec<u8>, usize>,
    by_marker: HashMap<String, usize>,
    by_sam: HashMap<String, usize>,
}

impl Found {
    pub fn new(objs: Vec<Obj>) -> Found {
        let mut f = Found {
            by_guid: HashMap::new(),
            by_marker: HashMap::new(),
            by_sam: HashMap::new(),
            objs: Vec::new(),
        };
        for (i, o) in objs.iter().enumerate() {
            f.by_guid.insert(o.guid.clone(), i);
            if let Some(id) = o.marker_id() {
                f.by_marker.insert(id.to_string(), i);
            }
            if !o.sam.is_empty() {
                f.by_sam.insert(o.sam.to_lowercase(), i);
            }
        }
        f.objs = objs;
        f
    }

    /// The AD object for a cloud id: by objectGUID, else by the agent's marker.
    fn managed(&self, guid: Option<&[u8]>, id: &str) -> Option<&Obj> {
        guid.and_then(|g| self.by_guid.get(g))
            .or_else(|| self.by_marker.get(id))
            .map(|&i| &self.objs[i])
    }

    fn by_guid(&self, guid: &[u8]) -> Option<&Obj> {
        self.by_guid.get(guid).map(|&i| &self.objs[i])
    }

    /// AD objects no marker of this agent's mirror claims: what adoption would look at.
    pub fn unmarked(&self) -> impl Iterator<Item = &Obj> {
        self.objs.iter().filter(|o| o.marker.is_none())
    }

    fn named(&self, sam: &str) -> Option<&Obj> {
        self.by_sam.get(&sam.to_lowercase()).map(|&i| &self.objs[i])
    }
}

/// Opens the sealed passwords of a run: each is the password, or why it cannot be used.
pub fn open_passwords(
    work: &Work,
    private_key: Option<&Secret>,
) -> HashMap<String, Result<Secret, String>> {
    work.passwords
        .iter()
        .map(|(id, sealed)| {
            let r = match (sealed, private_key) {
                (Some(sealed), Some(key)) => {
                    use ad_sync_core::cloud::sealed;
                    let seq = work.password_seqs.get(id).copied().unwrap_or(0);
                    sealed::open(key, sealed)
                        .and_then(|opened| sealed::unbind_password(&opened, id, seq))
                        .map_err(|e| format!("the password could not be opened with this agent's key: {e}"))
                }
                (Some(_), None) => Err("this agent has no private key to open passwords with; re-run ad-sync-setup".into()),
                (None, _) => Err("the cloud sealed this password for other agents only (it was set before this agent enrolled); set it again in the cloud".into()),
            };
            (id.clone(), r)
        })
        .collect()
}

/// Everything the planner decides from.
pub struct Input<'a> {
    pub scope: &'a Scope,
    /// The mirror after the fold (what AD should hold).
    pub mirror: &'a Mirror,
    /// The mirror before the fold (what was managed).
    pub before: &'a Mirror,
    pub work: &'a Work,
    pub lookup: &'a Lookup,
    pub found: &'a Found,
    /// The sync group as AD has it (`None`: not configured, or gone).
    pub sync_group: Option<&'a Obj>,
    pub passwords: &'a HashMap<String, Result<Secret, String>>,
    pub policy: &'a Sync,
    /// Tier 0: what the agent never gives power to (read from AD's ACLs and groups in every
    /// run that has work).
    pub tier0: &'a Tier0,
    /// Overrides the budget for one run (`--allow-deletions N`).
    pub allow_deletions: Option<usize>,
    /// Disconnections done within the budget's window before this run (the state's record).
    pub spent: usize,
    /// Disconnections the administrator approved (`ad-sync-agent pending --approve`): run
    /// whatever the threshold says, and not counted against it.
    pub approved: &'a HashSet<ObjKey>,
    /// The objectGUIDs this agent's own import linked (its state): the only links that stand
    /// for the adoption setting.
    pub consented: &'a HashSet<Vec<u8>>,
}

/// A disconnection the threshold holds back: nothing is done to its AD object until the
/// administrator approves it (`ad-sync-agent pending --approve`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldJob {
    pub key: ObjKey,
    /// The cloud object's name.
    pub name: String,
    pub dn: String,
    pub action: Action,
    /// What it would do, in words.
    pub what: String,
}

/// A managed group's DN once the run's operations ran, and its members as AD had them (`None`
/// for a group this run creates).
#[derive(Debug, Clone)]
pub struct GroupTarget {
    pub dn: String,
    pub members: Option<Vec<(Vec<u8>, String)>>,
}

/// The run's plan, in the order it runs: users, groups, (the new groups' nesting and the
/// memberships, planned once the objects exist: `nest_new_groups`, `memberships`), then the
/// disconnections.
#[derive(Debug, Default)]
pub struct Plan {
    /// Outcomes decided without running anything.
    pub outcomes: Outcomes,
    /// Existing AD objects taken over; each goes into the mirror once its job succeeded.
    pub adoptions: Vec<Adoption>,
    /// objectGUIDs the mirror learns from AD for objects it already manages (found by marker,
    /// or a GUID that changed).
    pub adopted: Vec<(ObjKey, Vec<u8>)>,
    pub users: Vec<Job>,
    pub created_users: Vec<String>,
    pub groups: Vec<Job>,
    pub created_groups: Vec<String>,
    pub group_targets: BTreeMap<String, GroupTarget>,
    pub removals: Vec<Job>,
    /// Objects the disconnections delete (what the threshold counts).
    pub deletions: usize,
    /// Disconnections held back by the threshold (none unless `blocked`).
    pub held: Vec<HeldJob>,
    /// The threshold this run's deletions went over: every disconnection not approved is held.
    pub blocked: Option<OverThreshold>,
    /// The cloud names of what the disconnecting jobs are about (for `pending`).
    names: HashMap<ObjKey, String>,
    /// For the log: what the plan chose not to do and why, where that is not an outcome.
    pub notes: Vec<String>,
    /// objectGUIDs the mirror holds or this plan takes over: an AD object is taken over for
    /// one cloud object only.
    claimed: HashSet<Vec<u8>>,
}

/// An existing AD object the plan takes over for a cloud object.
#[derive(Debug, Clone)]
pub struct Adoption {
    pub key: ObjKey,
    pub guid: Vec<u8>,
    pub dn: String,
    /// AD has a password for the account (pwdLastSet is set): the cloud need not set one
    /// before the account may be enabled.
    pub has_password: bool,
}

impl Input<'_> {
    /// How a cloud object's link to `linked` counts: as consent only when this agent's own
    /// import made it.
    fn link(&self, linked: Option<&Obj>) -> Link {
        match linked {
            None => Link::None,
            Some(o) if self.consented.contains(&o.guid) => Link::Imported,
            Some(_) => Link::Unconsented,
        }
    }

    fn rules(&self) -> Rules<'_> {
        Rules {
            scope: self.scope,
            sync_group_guid: self.sync_group.map(|o| o.guid.as_slice()),
            tier0: self.tier0,
            adopt_users: self.policy.adopt_existing_users,
            adopt_groups: self.policy.adopt_existing_groups,
        }
    }
}

impl Plan {
    /// Whether `obj` may be taken over for the cloud object `id` (the adoption rules), and if
    /// so claims it: one AD object is taken over for one cloud object only.
    fn may_take_over(
        &mut self,
        i: &Input,
        kind: Kind,
        obj: &Obj,
        id: &str,
        link: Link,
    ) -> Result<(), Refusal> {
        i.rules().check(kind, obj, id, link)?;
        if !i.mirror.manages_other(&obj.guid) && self.claimed.insert(obj.guid.clone()) {
            Ok(())
        } else {
            Err(Refusal::Claimed)
        }
    }
}

/// Plans the run's users, groups and disconnections; holds back the disconnections not
/// approved when they would delete more than the threshold allows.
pub fn plan(i: &Input) -> Plan {
    let mut p = Plan {
        claimed: i
            .mirror
            .users
            .values()
            .filter_map(|u| u.guid.clone())
            .chain(i.mirror.groups.values().filter_map(|g| g.guid.clone()))
            .collect(),
        ..Plan::default()
    };
    plan_users(i, &mut p);
    plan_groups(i, &mut p);
    plan_removals(i, &mut p);
    hold_over_budget(i, &mut p);
    p
}

/// The deletion budget: disconnections of every kind (delete, disable, release, and
/// suspensions of managed accounts) within a rolling window. Approved ones always run and are
/// not counted. When this run's unapproved ones would take the window's total over the limit,
/// every one of them is held (nothing done to its object; a suspension's disable is taken out
/// of its account's job, the rest of that job runs), its change answered as skipped with how
/// to approve it, and the rest of the run goes on.
fn hold_over_budget(i: &Input, p: &mut Plan) {
    let approved = |j: &Job| j.keys.iter().any(|k| i.approved.contains(k));
    let counted = |j: &Job| j.disconnect.is_some() && !approved(j);
    let planned = p
        .removals
        .iter()
        .chain(&p.users)
        .filter(|j| counted(j))
        .count();
    let Err(over) = threshold(i.before, planned, i.spent, i.policy, i.allow_deletions) else {
        return;
    };
    let reason = |id: &str| {
        format!(
            "held by the deletion budget (this run would disconnect {}, {} were disconnected in the last {} hours, {} allowed per {} hours of {} managed); see `ad-sync-agent pending`, approve with `ad-sync-agent pending --config FILE --approve {id}`",
            over.planned,
            over.spent,
            over.window_hours,
            over.limit,
            over.window_hours,
            over.managed
        )
    };
    let hold = |p: &mut Plan, key: &ObjKey, action: Action, op: Option<&Op>| {
        let id = match key {
            ObjKey::User(id) | ObjKey::Group(id) | ObjKey::Password(id) => id.clone(),
        };
        p.outcomes
            .insert(key.clone(), Outcome::Skipped(reason(&id)));
        p.held.push(HeldJob {
            key: key.clone(),
            name: p.names.get(key).cloned().unwrap_or_default(),
            dn: op.map(|o| o.dn.clone()).unwrap_or_default(),
            action,
            what: op.map(|o| o.what.clone()).unwrap_or_default(),
        });
    };
    for job in std::mem::take(&mut p.removals) {
        let Some(action) = job.disconnect.filter(|_| counted(&job)) else {
            p.removals.push(job);
            continue;
        };
        if action == Action::Delete {
            p.deletions -= 1;
        }
        for key in &job.keys {
            hold(p, key, action, job.ops.last());
        }
    }
    let mut users = std::mem::take(&mut p.users);
    for job in users.iter_mut().filter(|j| counted(j)) {
        let disable = job.ops.iter().position(|o| o.kind == OpKind::Disable);
        let op = disable.map(|at| job.ops.remove(at));
        job.disconnect = None;
        for key in &job.keys {
            hold(p, key, Action::Suspend, op.as_ref());
        }
    }
    p.users = users;
    p.blocked = Some(over);
}

/// The budget: within `deletion_window_hours`, at most `deletion_threshold` disconnections
/// and at most `deletion_threshold_percent` of the objects managed (rounded up), whichever is
/// smaller, counting those already made (`spent`). `--allow-deletions N` allows N in this run,
/// whatever was spent.
pub fn threshold(
    before: &Mirror,
    planned: usize,
    spent: usize,
    policy: &Sync,
    allow: Option<usize>,
) -> Result<(), OverThreshold> {
    let managed = before.managed_count();
    let (limit, spent) = match allow {
        Some(n) => (n, 0),
        None => (ad_sync_core::policy::budget(managed, policy), spent),
    };
    if planned > 0 && spent + planned > limit {
        return Err(OverThreshold {
            planned,
            spent,
            limit,
            managed,
            window_hours: policy.deletion_window_hours,
        });
    }
    Ok(())
}

fn plan_users(i: &Input, p: &mut Plan) {
    let scope = i.scope;
    for id in &i.work.users {
        let Some(rec) = i.mirror.users.get(id) else {
            continue;
        };
        let u = &rec.user;
        let key = ObjKey::User(id.clone());
        let pw_key = ObjKey::Password(id.clone());
        // A password that cannot be used fails on its own; the account is still synced.
        let password = match i.passwords.get(id) {
            Some(Ok(_)) if !scope.encrypted => {
                p.outcomes.insert(pw_key.clone(), Outcome::Failed(format!(
                    "password for {} refused: the connection to {} is not encrypted, and passwords are only sent over an encrypted connection. Fix LDAPS or StartTLS ([ldap] security), then set the password again in the cloud",
                    u.username, scope.host
                )));
                None
            }
            Some(Ok(pw)) => Some(pw),
            Some(Err(why)) => {
                p.outcomes.insert(
                    pw_key.clone(),
                    Outcome::Failed(format!("password for {}: {why}", u.username)),
                );
                None
            }
            None => None,
        };
        let display = u
            .display_name
            .clone()
            .unwrap_or_else(|| format!("{} {}", u.given_name, u.surname));
        let upn = format!("{}@{}", u.username, scope.dns_domain);
        let (obj, adopting) = match i.found.managed(rec.guid.as_deref(), id) {
            Some(obj) => (obj, false),
            None => {
                // The AD object an import linked it to, else one of the same name.
                let linked = link_guid(&u.links, scope).and_then(|g| i.found.by_guid(&g));
                let link = i.link(linked);
                let Some(other) = linked.or_else(|| i.found.named(&u.username)) else {
                    p.created_users.push(id.clone());
                    p.users
                        .push(new_user(id, u, &upn, &display, password, scope, pw_key));
                    continue;
                };
                if let Err(refusal) = p.may_take_over(i, Kind::User, other, id, link) {
                    p.outcomes.insert(
                        key,
                        Outcome::Failed(format!(
                            "{} collides with the existing AD account {}: {}",
                            u.username,
                            other.dn,
                            refusal.words(Kind::User, scope)
                        )),
                    );
                    p.outcomes.entry(pw_key).or_insert_with(|| {
                        Outcome::Skipped("the account is not synced (collision)".into())
                    });
                    continue;
                }
                (other, true)
            }
        };
        if !scope.under_root(&obj.parsed) {
            p.outcomes.insert(key, Outcome::Skipped(format!(
                "{} was moved out of the Root User container ({}) to {}; the agent does not touch it there. Move it back to sync it",
                u.username,
                scope.root_text(),
                obj.dn
            )));
            p.outcomes
                .entry(pw_key)
                .or_insert_with(|| Outcome::Skipped("the account is not synced".into()));
            continue;
        }
        if let Some(why) = i.tier0.why(obj) {
            p.outcomes.insert(
                key,
                Outcome::Failed(refused("", &u.username, &obj.dn, &why)),
            );
            let pw = if i.passwords.contains_key(id) {
                Outcome::Failed(format!(
                    "password for {} not set: {}",
                    u.username,
                    refused("", &u.username, &obj.dn, &why)
                ))
            } else {
                Outcome::Skipped("the account is privileged or protected".into())
            };
            p.outcomes.entry(pw_key).or_insert(pw);
            continue;
        }
        // Taken over: planned as the object will be once marked. AD's own password counts
        // only for an account AD has enabled: a disabled one may carry an old password its
        // owner should no longer have, and stays disabled until the cloud sets one.
        let marked;
        let (current, has_password) = if adopting {
            marked = Obj {
                marker: Some(marker(id)),
                ..obj.clone()
            };
            (&marked, rec.password_set || adoptable_password(obj))
        } else {
            (obj, rec.password_set)
        };
        let mut ops = Vec::new();
        if adopting {
            let changes = attribute_diff(current, u, &upn, &display)
                .into_iter()
                .map(|(a, _)| a)
                .collect();
            ops.push(adopt_op(obj, id, &u.username, changes));
            p.outcomes
                .insert(key.clone(), Outcome::Adopted(obj.dn.clone()));
            p.adoptions.push(Adoption {
                key: key.clone(),
                guid: obj.guid.clone(),
                dn: obj.dn.clone(),
                has_password: adoptable_password(obj),
            });
        } else if rec.guid.as_deref() != Some(obj.guid.as_slice()) {
            p.adopted.push((key.clone(), obj.guid.clone()));
        }
        ops.extend(user_changes(
            current,
            rec,
            &upn,
            &display,
            password,
            has_password,
            i.work.unlock.contains(id),
            &mut p.notes,
        ));
        // A suspension of a managed account counts against the deletion budget like a
        // disconnection (a cloud that suspends everyone locks the domain out).
        let suspends = ops.iter().any(|o| o.kind == OpKind::Disable);
        if suspends {
            p.names.insert(key.clone(), u.username.clone());
        }
        p.users.push(Job {
            keys: vec![key],
            ops,
            password_key: password.map(|_| pw_key),
            disconnect: suspends.then_some(Action::Suspend),
        });
    }
}

/// Whether an account taken over keeps the password AD has for it as if the cloud had set it:
/// only when AD has one and the account is enabled.
fn adoptable_password(obj: &Obj) -> bool {
    obj.pwd_last_set != 0 && obj.enabled()
}

/// A managed object the agent no longer writes because it is Tier 0: what was refused, why,
/// and what the administrator does about it.
fn refused(kind: &str, name: &str, dn: &str, why: &str) -> String {
    format!(
        "{kind}{name} ({dn}) is not changed: {why}. The agent never sets a password on, enables or changes the memberships of a privileged or protected object, whatever the cloud says. If it should be synced, remove the privilege named above; otherwise stop syncing it in the cloud"
    )
}

/// The marker of the cloud object `id` written on an existing object the agent takes over,
/// saying in the log and the dry run what it was and what the cloud will now set (`changes`).
fn adopt_op(obj: &Obj, id: &str, name: &str, changes: Vec<String>) -> Op {
    let then = if changes.is_empty() {
        "its attributes already match the cloud".to_string()
    } else {
        format!("the cloud now sets {}", changes.join(", "))
    };
    Op::modify(
        OpKind::Adopt,
        &obj.dn,
        vec![Mod::Replace(b"adminDescription".to_vec(), set(marker(id)))],
        format!(
            "adopt the existing {} {} for cloud {} {name} ({then}{})",
            if obj.is_group { "group" } else { "account" },
            obj.dn,
            if obj.is_group { "group" } else { "user" },
            if obj.is_group {
                ""
            } else {
                "; its password is kept until the cloud sets one"
            },
        ),
    )
}

/// The attributes of an account the agent manages that differ from the cloud user: each
/// attribute and the value it gets (`None`: cleared).
fn attribute_diff(
    obj: &Obj,
    u: &ad_sync_core::cloud::api::User,
    upn: &str,
    display: &str,
) -> Vec<(String, Option<String>)> {
    let own = marker(&u.id);
    let pairs: [(&str, Option<&str>, Option<&str>); 7] = [
        (
            "sAMAccountName",
            Some(obj.sam.as_str()),
            Some(u.username.as_str()),
        ),
        ("userPrincipalName", obj.upn.as_deref(), Some(upn)),
        ("givenName", obj.given.as_deref(), Some(&u.given_name)),
        ("sn", obj.sn.as_deref(), Some(&u.surname)),
        ("displayName", obj.display.as_deref(), Some(display)),
        ("mail", obj.mail.as_deref(), u.email.as_deref()),
        (
            "adminDescription",
            obj.marker.as_deref(),
            Some(own.as_str()),
        ),
    ];
    pairs
        .into_iter()
        .filter(|(_, have, want)| have != want)
        .map(|(attr, _, want)| (attr.to_string(), want.map(str::to_string)))
        .collect()
}

/// The operations that bring an account the agent manages to the cloud user `rec`: its CN,
/// its attributes and marker, its password, whether it is enabled (never without a password:
/// `has_password` says whether it has one) and its lockout (`unlock`: the cloud cleared it).
#[allow(clippy::too_many_arguments)]
fn user_changes(
    obj: &Obj,
    rec: &crate::mirror::UserRec,
    upn: &str,
    display: &str,
    password: Option<&Secret>,
    has_password: bool,
    unlock: bool,
    notes: &mut Vec<String>,
) -> Vec<Op> {
    let u = &rec.user;
    let mut ops = Vec::new();
    let dn = rename_to(obj, &u.username, "", &mut ops);
    let diff = attribute_diff(obj, u, upn, display);
    if !diff.is_empty() {
        let what = format!(
            "update {} of {dn}",
            diff.iter()
                .map(|(a, _)| a.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mods = diff
            .into_iter()
            .map(|(attr, want)| {
                Mod::Replace(
                    attr.into_bytes(),
                    want.map(|w| set(w.into_bytes())).unwrap_or_default(),
                )
            })
            .collect();
        ops.push(Op::modify(OpKind::UpdateAttributes, &dn, mods, what));
    }
    let mut has_password = has_password;
    if let Some(pw) = password {
        ops.push(Op::modify(
            OpKind::SetPassword,
            &dn,
            vec![Mod::Replace(
                b"unicodePwd".to_vec(),
                set(crate::ad::unicode_pwd(pw).to_vec()),
            )],
            format!("set the password of {dn}"),
        ));
        has_password = true;
    }
    let disabled = obj.uac & UAC_DISABLED != 0;
    let uac = |v: i64| {
        vec![Mod::Replace(
            b"userAccountControl".to_vec(),
            set(v.to_string()),
        )]
    };
    if u.suspended && !disabled {
        ops.push(Op::modify(
            OpKind::Disable,
            &dn,
            uac(obj.uac | UAC_DISABLED),
            format!("disable {dn} (suspended in the cloud)"),
        ));
    } else if !u.suspended && disabled {
        if has_password {
            ops.push(Op::modify(
                OpKind::Enable,
                &dn,
                uac(obj.uac & !UAC_DISABLED),
                format!("enable {dn}"),
            ));
        } else {
            notes.push(format!(
                "{dn} stays disabled until its password is set in the cloud"
            ));
        }
    }
    if unlock && obj.lockout_time > 0 {
        ops.push(Op::modify(
            OpKind::Unlock,
            &dn,
            vec![Mod::Replace(b"lockoutTime".to_vec(), set("0"))],
            format!("unlock {dn}"),
        ));
    }
    ops
}

/// The job that creates a user the cloud has and AD does not: in the Root User container, with
/// the marker, enabled only with a password and not suspended.
fn new_user(
    id: &str,
    u: &ad_sync_core::cloud::api::User,
    upn: &str,
    display: &str,
    password: Option<&Secret>,
    scope: &Scope,
    pw_key: ObjKey,
) -> Job {
    let dn = format!("CN={},{}", escape_rdn_value(&u.username), scope.root_text());
    let mut attrs: Vec<(String, HashSet<Vec<u8>>)> = vec![
        (
            "objectClass".into(),
            ["top", "person", "organizationalPerson", "user"]
                .iter()
                .map(|c| c.as_bytes().to_vec())
                .collect(),
        ),
        ("sAMAccountName".into(), set(u.username.as_str())),
        ("userPrincipalName".into(), set(upn)),
        ("givenName".into(), set(u.given_name.as_str())),
        ("sn".into(), set(u.surname.as_str())),
        ("displayName".into(), set(display)),
        ("adminDescription".into(), set(marker(id))),
    ];
    if let Some(m) = &u.email {
        attrs.push(("mail".into(), set(m.as_str())));
    }
    let enabled = password.is_some() && !u.suspended;
    if let Some(pw) = password {
        attrs.push((
            "unicodePwd".into(),
            set(crate::ad::unicode_pwd(pw).to_vec()),
        ));
    }
    let uac = if enabled {
        UAC_NORMAL
    } else {
        UAC_NORMAL | UAC_DISABLED
    };
    attrs.push(("userAccountControl".into(), set(uac.to_string())));
    let what = format!(
        "create user {dn}{}",
        if password.is_some() {
            " with its password"
        } else {
            " (disabled until a password is set)"
        }
    );
    Job {
        keys: vec![ObjKey::User(id.to_string())],
        ops: vec![Op {
            kind: OpKind::CreateUser,
            dn,
            change: Change::Add(attrs),
            what,
        }],
        password_key: password.map(|_| pw_key),
        disconnect: None,
    }
}

fn plan_groups(i: &Input, p: &mut Plan) {
    let scope = i.scope;
    let no_sync_group = scope.sync_group.is_none() || scope.group_parent().is_none();
    for id in &i.lookup.groups {
        let Some(g) = i.mirror.groups.get(id) else {
            continue;
        };
        let key = ObjKey::Group(id.clone());
        if no_sync_group {
            p.outcomes.insert(key, Outcome::Skipped("no sync group is configured ([directory] sync_group_dn), so groups are not synced; re-run ad-sync-setup to choose one".into()));
            continue;
        }
        let Some(sync_obj) = i.sync_group else {
            p.outcomes.insert(
                key,
                Outcome::Failed(format!(
                    "the sync group {} does not exist in AD; create it or re-run ad-sync-setup",
                    scope
                        .sync_group
                        .as_ref()
                        .map(|d| d.to_comma_form())
                        .unwrap_or_default()
                )),
            );
            continue;
        };
        if let Some(why) = &sync_obj.protected {
            p.outcomes.insert(
                key,
                Outcome::Failed(format!(
                    "the sync group {} is never written: {why}; putting the cloud's groups in it would give their members its privileges. Choose an ordinary security group as the sync group (re-run ad-sync-setup)",
                    sync_obj.dn
                )),
            );
            continue;
        }
        let linked = link_guid(&g.links, scope).and_then(|l| i.found.by_guid(&l));
        let managed = i.found.managed(g.guid.as_deref(), id);
        let candidate = match managed {
            Some(_) => None,
            None => linked.or_else(|| i.found.named(&g.name)),
        };
        if let Some(other) = candidate
            && let Err(refusal) = p.may_take_over(i, Kind::Group, other, id, i.link(linked))
        {
            p.outcomes.insert(
                key,
                Outcome::Failed(format!(
                    "group {} collides with the existing AD object {}: {}",
                    g.name,
                    other.dn,
                    refusal.words(Kind::Group, scope)
                )),
            );
            continue;
        }
        let adopting = candidate.is_some();
        let Some(obj) = managed.or(candidate) else {
            let parent = scope
                .group_parent()
                .map(|p| p.to_comma_form())
                .unwrap_or_default();
            let dn = format!("CN={},{parent}", escape_rdn_value(&g.name));
            let attrs = vec![
                ("objectClass".to_string(), set("group")),
                ("sAMAccountName".into(), set(g.name.as_str())),
                ("groupType".into(), set(GROUP_TYPE_GLOBAL_SECURITY)),
                ("adminDescription".into(), set(marker(id))),
            ];
            p.created_groups.push(id.clone());
            p.groups.push(Job {
                keys: vec![key],
                // Nested in the sync group after all are created, in one operation.
                ops: vec![Op {
                    kind: OpKind::CreateGroup,
                    dn: dn.clone(),
                    change: Change::Add(attrs),
                    what: format!("create security group {dn}"),
                }],
                password_key: None,
                disconnect: None,
            });
            p.group_targets
                .insert(id.clone(), GroupTarget { dn, members: None });
            continue;
        };
        if !obj.is_group || !scope.group_home(&obj.parsed) {
            p.outcomes.insert(key, Outcome::Skipped(format!(
                "group {} was moved to {}, out of the sync group's container and the Root User container; the agent does not touch it there",
                g.name, obj.dn
            )));
            continue;
        }
        if let Some(why) = i.tier0.why(obj) {
            p.outcomes.insert(
                key,
                Outcome::Failed(refused("group ", &g.name, &obj.dn, &why)),
            );
            continue;
        }
        let mut ops = Vec::new();
        if adopting {
            let mut changes = Vec::new();
            if obj.sam != g.name {
                changes.push("sAMAccountName".to_string());
            }
            if obj.parsed.as_ref().and_then(|d| d.first_value()) != Some(g.name.as_str()) {
                changes.push("its CN".to_string());
            }
            changes.push("its members the cloud manages (the others stay)".to_string());
            ops.push(adopt_op(obj, id, &g.name, changes));
            p.outcomes
                .insert(key.clone(), Outcome::Adopted(obj.dn.clone()));
            p.adoptions.push(Adoption {
                key: key.clone(),
                guid: obj.guid.clone(),
                dn: obj.dn.clone(),
                has_password: false,
            });
        } else if g.guid.as_deref() != Some(obj.guid.as_slice()) {
            p.adopted.push((key.clone(), obj.guid.clone()));
        }
        let dn = rename_to(obj, &g.name, "group ", &mut ops);
        if obj.sam != g.name {
            ops.push(Op::modify(
                OpKind::UpdateAttributes,
                &dn,
                vec![Mod::Replace(
                    b"sAMAccountName".to_vec(),
                    set(g.name.as_str()),
                )],
                format!("update sAMAccountName of {dn}"),
            ));
        }
        if !obj.member_of.iter().any(|(guid, _)| *guid == sync_obj.guid) {
            ops.push(Op::modify(
                OpKind::NestInSyncGroup,
                &sync_obj.dn,
                vec![Mod::Add(b"member".to_vec(), set(dn.as_str()))],
                format!("nest {dn} in the sync group"),
            ));
        }
        p.group_targets.insert(
            id.clone(),
            GroupTarget {
                dn,
                members: Some(obj.members.clone()),
            },
        );
        p.groups.push(Job {
            keys: vec![key],
            ops,
            password_key: None,
            disconnect: None,
        });
    }
}

fn plan_removals(i: &Input, p: &mut Plan) {
    let scope = i.scope;
    // Groups the agent manages (before the fold, or learnt in this plan): a disconnected user
    // leaves only those under membership disconnection `remove`.
    let managed_group_guids: HashSet<&[u8]> = i
        .before
        .groups
        .values()
        .chain(i.mirror.groups.values())
        .filter_map(|g| g.guid.as_deref())
        .chain(
            p.adopted
                .iter()
                .filter_map(|(k, g)| matches!(k, ObjKey::Group(_)).then_some(g.as_slice())),
        )
        .collect();
    for rec in &i.work.removed_users {
        let key = ObjKey::User(rec.user.id.clone());
        let Some(obj) = i.found.managed(rec.guid.as_deref(), &rec.user.id) else {
            continue; // Already gone from AD.
        };
        if !scope.under_root(&obj.parsed) || obj.protected.is_some() {
            p.outcomes.insert(
                key,
                Outcome::Skipped(format!(
                    "{} is outside the Root User container or protected; left as it is",
                    obj.dn
                )),
            );
            continue;
        }
        let mut ops = Vec::new();
        if i.policy.membership_disconnection_action == GroupDisconnection::Remove {
            for (g, gdn) in &obj.member_of {
                if managed_group_guids.contains(g.as_slice()) {
                    ops.push(Op::modify(
                        OpKind::RemoveMembership,
                        gdn,
                        vec![Mod::Delete(b"member".to_vec(), set(obj.dn.as_str()))],
                        format!(
                            "remove {} from {gdn} (membership disconnection: remove)",
                            obj.dn
                        ),
                    ));
                }
            }
        }
        let action = match i.policy.user_disconnection_action {
            UserDisconnection::Remove => Action::Delete,
            UserDisconnection::Disable => Action::Disable,
            UserDisconnection::Retain => Action::Release,
        };
        p.names.insert(key.clone(), rec.user.username.clone());
        ops.push(match i.policy.user_disconnection_action {
            UserDisconnection::Remove => {
                p.deletions += 1;
                Op {
                    kind: OpKind::DeleteUser,
                    dn: obj.dn.clone(),
                    change: Change::Delete,
                    what: format!("delete user {} (user disconnection: remove)", obj.dn),
                }
            }
            UserDisconnection::Disable => Op::modify(
                OpKind::Release,
                &obj.dn,
                vec![
                    Mod::Replace(
                        b"userAccountControl".to_vec(),
                        set((obj.uac | UAC_DISABLED).to_string()),
                    ),
                    unmark(),
                ],
                format!(
                    "disable {} and stop managing it (user disconnection: disable)",
                    obj.dn
                ),
            ),
            UserDisconnection::Retain => Op::modify(
                OpKind::Release,
                &obj.dn,
                vec![unmark()],
                format!(
                    "keep {} as it is and stop managing it (user disconnection: retain)",
                    obj.dn
                ),
            ),
        });
        p.removals.push(Job {
            keys: vec![key],
            ops,
            password_key: None,
            disconnect: Some(action),
        });
    }
    for rec in &i.work.removed_groups {
        let key = ObjKey::Group(rec.id.clone());
        let Some(obj) = i.found.managed(rec.guid.as_deref(), &rec.id) else {
            continue;
        };
        if obj.protected.is_some() || !scope.group_home(&obj.parsed) {
            p.outcomes.insert(
                key,
                Outcome::Skipped(format!(
                    "{} is outside the sync group's container or protected; left as it is",
                    obj.dn
                )),
            );
            continue;
        }
        let action = match i.policy.group_disconnection_action {
            GroupDisconnection::Remove => Action::Delete,
            GroupDisconnection::Retain => Action::Release,
        };
        p.names.insert(key.clone(), rec.name.clone());
        let op = match i.policy.group_disconnection_action {
            GroupDisconnection::Remove => {
                p.deletions += 1;
                Op {
                    kind: OpKind::DeleteGroup,
                    dn: obj.dn.clone(),
                    change: Change::Delete,
                    what: format!("delete group {} (group disconnection: remove)", obj.dn),
                }
            }
            GroupDisconnection::Retain => Op::modify(
                OpKind::Release,
                &obj.dn,
                vec![unmark()],
                format!(
                    "keep group {} and stop managing it (group disconnection: retain)",
                    obj.dn
                ),
            ),
        };
        p.removals.push(Job {
            keys: vec![key],
            ops: vec![op],
            password_key: None,
            disconnect: Some(action),
        });
    }
}

/// Plans renaming `obj` to `CN=<name>` in its own container when its CN differs; returns the
/// DN it has once the planned operations ran.
fn rename_to(obj: &Obj, name: &str, kind: &str, ops: &mut Vec<Op>) -> String {
    if obj.parsed.as_ref().and_then(|d| d.first_value()) == Some(name) {
        return obj.dn.clone();
    }
    let rdn = format!("CN={}", escape_rdn_value(name));
    let parent = obj
        .parsed
        .as_ref()
        .and_then(|d| d.parent())
        .map(|p| p.to_comma_form())
        .unwrap_or_default();
    ops.push(Op {
        kind: OpKind::Rename,
        dn: obj.dn.clone(),
        change: Change::Rename(rdn.clone()),
        what: format!("rename {kind}{} to {rdn}", obj.dn),
    });
    format!("{rdn},{parent}")
}

/// Users whose password AD has once this run is done: set here, or sealed only for the agents
/// of the time (`None`), which set it then.
pub fn passwords_now_set<'a>(work: &'a Work, outcomes: &Outcomes) -> Vec<&'a String> {
    work.passwords
        .iter()
        .filter(|(id, sealed)| {
            sealed.is_none()
                || matches!(
                    outcomes.get(&ObjKey::Password((*id).clone())),
                    Some(Outcome::Done)
                )
        })
        .map(|(id, _)| id)
        .collect()
}

/// The groups this run created (all of them in a dry run) go into the sync group together,
/// one modify per 500.
pub fn nest_new_groups(
    plan: &Plan,
    sync_group: &Obj,
    outcomes: &Outcomes,
    dry_run: bool,
) -> Vec<Job> {
    if sync_group.protected.is_some() {
        return Vec::new();
    }
    let new: Vec<(&String, &String)> = plan
        .created_groups
        .iter()
        .filter(|id| {
            dry_run
                || matches!(
                    outcomes.get(&ObjKey::Group((*id).clone())),
                    Some(Outcome::Done)
                )
        })
        .filter_map(|id| plan.group_targets.get(id).map(|t| (id, &t.dn)))
        .collect();
    new.chunks(500)
        .map(|chunk| Job {
            keys: chunk
                .iter()
                .map(|(id, _)| ObjKey::Group((*id).clone()))
                .collect(),
            ops: vec![Op::modify(
                OpKind::NestInSyncGroup,
                &sync_group.dn,
                vec![Mod::Add(
                    b"member".to_vec(),
                    chunk.iter().map(|(_, dn)| dn.as_bytes().to_vec()).collect(),
                )],
                format!(
                    "nest {} new group(s) in the sync group {}",
                    chunk.len(),
                    sync_group.dn
                ),
            )],
            password_key: None,
            disconnect: None,
        })
        .collect()
}

/// Each managed group's members brought to the mirror, once its users and groups exist (their
/// objectGUIDs are in `mirror`). Only members the agent manages are added or removed; anything
/// else an administrator put in a managed group stays. Groups that failed or were skipped are
/// left alone.
pub fn memberships(
    mirror: &Mirror,
    work: &Work,
    plan: &Plan,
    groups: &BTreeSet<String>,
    outcomes: &mut Outcomes,
    policy: &Sync,
    tier0: &Tier0,
) -> Vec<Job> {
    let match_mode = policy.group_membership_sync_type == MembershipSyncType::Match;
    let managed: HashSet<&[u8]> = mirror
        .users
        .values()
        .filter_map(|u| u.guid.as_deref())
        .chain(mirror.groups.values().filter_map(|g| g.guid.as_deref()))
        .collect();
    let mut jobs = Vec::new();
    for id in groups {
        let key = ObjKey::Group(id.clone());
        if matches!(
            outcomes.get(&key),
            Some(Outcome::Failed(_) | Outcome::Skipped(_))
        ) {
            continue;
        }
        let Some(target) = plan.group_targets.get(id) else {
            continue;
        };
        // A group in AD that only membership changes named: only the members they named are
        // compared (the full comparison compares the rest); otherwise every member.
        let delta = target
            .members
            .as_ref()
            .and_then(|_| (!match_mode).then(|| work.delta(id)).flatten());
        let guid_of = |t: MemberType, m: &str| match t {
            MemberType::User => mirror.users.get(m).and_then(|u| u.guid.clone()),
            MemberType::Group => mirror.groups.get(m).and_then(|g| g.guid.clone()),
        };
        let named: Option<HashSet<Vec<u8>>> =
            delta.map(|d| d.iter().filter_map(|(t, m)| guid_of(*t, m)).collect());
        let in_view = |g: &[u8]| named.as_ref().is_none_or(|n| n.contains(g));
        let all_of_ad = target.members.as_deref().unwrap_or_default();
        let have_all: Vec<&(Vec<u8>, String)> =
            all_of_ad.iter().filter(|(g, _)| in_view(g)).collect();
        let is_managed = |g: &[u8]| managed.contains(g) || mirror.manages_other(g);
        let have: HashSet<&[u8]> = have_all
            .iter()
            .map(|(g, _)| g.as_slice())
            .filter(|g| is_managed(g))
            .collect();
        let want: HashSet<Vec<u8>> = mirror
            .desired_members(id, match_mode)
            .into_iter()
            .filter(|(t, m)| delta.is_none_or(|d| d.contains(&(*t, m.clone()))))
            .filter_map(|(t, m)| guid_of(t, &m))
            .collect();
        // A privileged member is never put in nor taken out of a group by the cloud's word.
        let mut refused_members = Vec::new();
        let mut allowed = |g: &[u8]| match tier0.why_guid(g) {
            Some(why) => {
                refused_members.push(format!("{} ({why})", member_name(mirror, g)));
                false
            }
            None => true,
        };
        let add: HashSet<Vec<u8>> = want
            .iter()
            .filter(|g| !have.contains(g.as_slice()))
            .filter(|g| allowed(g))
            .map(|g| guid_ref(g))
            .collect();
        // By objectGUID: a member renamed earlier in this run has a new DN.
        let del: HashSet<Vec<u8>> = have_all
            .iter()
            .filter(|(g, _)| is_managed(g) && !want.contains(g))
            .filter(|(g, _)| allowed(g))
            .map(|(g, _)| guid_ref(g))
            .collect();
        if !refused_members.is_empty() {
            outcomes.insert(
                key.clone(),
                Outcome::Failed(format!(
                    "members of {} not changed for privileged accounts: {}. The agent never changes the memberships of a privileged object; remove the privilege, or stop syncing the account",
                    target.dn,
                    refused_members.join("; ")
                )),
            );
        }
        if add.is_empty() && del.is_empty() {
            continue;
        }
        let what = format!(
            "members of {}: {} added, {} removed",
            target.dn,
            add.len(),
            del.len()
        );
        let mut mods = Vec::new();
        if !add.is_empty() {
            mods.push(Mod::Add(b"member".to_vec(), add));
        }
        if !del.is_empty() {
            mods.push(Mod::Delete(b"member".to_vec(), del));
        }
        jobs.push(Job {
            keys: vec![key],
            ops: vec![Op::modify(OpKind::Members, &target.dn, mods, what)],
            password_key: None,
            disconnect: None,
        });
    }
    jobs
}

/// A managed member's name for a message: its cloud name, else its objectGUID.
fn member_name(mirror: &Mirror, guid: &[u8]) -> String {
    mirror
        .users
        .values()
        .find(|u| u.guid.as_deref() == Some(guid))
        .map(|u| u.user.username.clone())
        .or_else(|| {
            mirror
                .groups
                .values()
                .find(|g| g.guid.as_deref() == Some(guid))
                .map(|g| g.name.clone())
        })
        .unwrap_or_else(|| ad_sync_core::directory::object::guid_string(guid))
}

/// Each change's result from its objects' outcomes: failed if any failed, else skipped if any
/// was skipped, else applied. Returns the results and how many failed and were skipped.
pub fn results(work: &Work, outcomes: &Outcomes) -> (Vec<ChangeResult>, usize, usize) {
    let mut by_seq: HashMap<i64, Vec<&ObjKey>> = HashMap::new();
    for (k, seqs) in &work.seqs {
        for s in seqs {
            by_seq.entry(*s).or_default().push(k);
        }
    }
    let skipped: HashMap<i64, &String> = work.skipped.iter().map(|(s, m)| (*s, m)).collect();
    let mut results = Vec::new();
    let (mut failed_n, mut skipped_n) = (0, 0);
    for seq in &work.all_seqs {
        let (status, message) = if let Some(m) = skipped.get(seq) {
            (ApplyStatus::Skipped, (*m).clone())
        } else {
            let mut st = (ApplyStatus::Applied, String::new());
            // Keys in a fixed order, so which message a change carries does not vary by run.
            let mut keys = by_seq.get(seq).cloned().unwrap_or_default();
            keys.sort();
            for k in keys {
                match outcomes.get(k) {
                    Some(Outcome::Failed(m)) => st = (ApplyStatus::Failed, m.clone()),
                    Some(Outcome::Skipped(m)) if st.0 == ApplyStatus::Applied => {
                        st = (ApplyStatus::Skipped, m.clone())
                    }
                    Some(Outcome::Adopted(dn))
                        if st.0 == ApplyStatus::Applied && st.1.is_empty() =>
                    {
                        st.1 = format!("adopted {dn}")
                    }
                    _ => {}
                }
            }
            st
        };
        match status {
            ApplyStatus::Failed => failed_n += 1,
            ApplyStatus::Skipped => skipped_n += 1,
            ApplyStatus::Applied => {}
        }
        results.push(ChangeResult {
            seq: *seq,
            status,
            message,
        });
    }
    (results, failed_n, skipped_n)
}

#[cfg(test)]
pub(crate) mod tests;
