//! AD as a source: what changed in AD since the cloud's cursor reaches the cloud.
//!
//! DirSync (`directory::dirsync`) says which users changed since the cookie the cloud holds
//! (`GET /v1/source/cursor`: never a cookie of the agent's own, so a standby that takes over, a
//! reinstalled agent or a restored state resume where the cloud is). Each changed user is then
//! read whole by objectGUID (the attribute map's attributes and what the scope rules need), so
//! the cloud always gets the whole record: a user that moves into the scope arrives complete,
//! and a field cleared in AD is cleared in the cloud. [`plan_user`] (pure, table-tested) decides
//! what each becomes; the page and its cookie go to the cloud together
//! (`POST /v1/source/changes`), in parts of at most 1,000 users.
//!
//! A cookie is one DC's: when the cloud's cursor names another DC, the read starts over from
//! nothing (a full read; the cloud compares by objectGUID, so nothing is created twice).

use crate::ad::Ad;
use crate::state::State;
use ad_sync_core::cloud::api::{
    MAX_SOURCE_ITEMS, SourceContact, SourceCursor, SourceGroup, SourceHeld, SourceOutcome,
    SourceRequest, SourceResponse, SourceUser,
};
use ad_sync_core::cloud::client::CloudClient;
use ad_sync_core::directory::dirsync::{self, Delta};
use ad_sync_core::directory::object::{ATTRS, Obj, guid_filter, guid_string, object};
use ad_sync_core::directory::usn;
use ad_sync_core::mapping::{Kind, Mapping};
use ad_sync_core::secret::Secret;
use ad_sync_core::source_scope::{Scope, Verdict, decide};
use std::collections::{BTreeMap, HashMap, HashSet};

/// How many left-out users a report lists by name (the rest are counted).
pub const LEFT_OUT_LISTED: usize = 100;

/// What one export did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExportReport {
    /// Read from nothing (no cursor yet, or another DC's).
    pub full: bool,
    pub pages: usize,
    pub changed: usize,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub suspended: usize,
    pub restored: usize,
    /// Users the cloud refused, with its reason (objectGUID, words).
    pub refused: Vec<(String, String)>,
    /// Users inside the scope's containers that its rules left out (objectGUID, why): a
    /// protected account not named, a computer, the cloud's own account. The first
    /// `LEFT_OUT_LISTED`; the domain's accounts outside the containers are only counted, so
    /// that the refusals an administrator acts on are never crowded out by them.
    pub left_out: Vec<(String, String)>,
    /// How many were left out in all, inside the containers or not (DirSync reads the whole
    /// domain's changes, so a change outside the containers is counted here; a full read and
    /// the reconciliation read only the containers).
    pub left_out_count: usize,
    /// A full reconciliation ran.
    pub reconciled: bool,
    /// Users and groups its read of the scope found in the scope.
    pub read: usize,
    /// Live users the cloud holds from AD that it did not find in the scope.
    pub departed: usize,
    /// Suspensions the deletion threshold holds (`pending` lists them), each once however
    /// often this run found it gone (DirSync and the reconciliation may both).
    pub held: usize,
    #[serde(skip)]
    held_now: HashSet<String>,
    /// The threshold that held them.
    pub blocked: Option<crate::plan::OverThreshold>,
    /// How AD's changes were read: DirSync, or `uSNChanged` (forced by `[source]
    /// change_detection`, or where the DC refused DirSync: `fallback` says why).
    pub reader: Reader,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// Where the run's time went, in milliseconds (for the log, `--json` and the bench).
    pub took: Took,
}

impl ExportReport {
    /// Counts `guid` (read as `obj`) left out by the scope's rules, and lists it with `why`
    /// when it is inside the scope's containers, once (an export's changes and its
    /// reconciliation may both find it) and among the first [`LEFT_OUT_LISTED`].
    fn leave_out(&mut self, guid: &str, obj: Option<&Obj>, scope: &Scope, why: String) {
        self.left_out_count += 1;
        let inside = obj.is_some_and(|o| scope.holds(o.parsed.as_ref()));
        if inside
            && self.left_out.len() < LEFT_OUT_LISTED
            && !self.left_out.iter().any(|(g, _)| g == guid)
        {
            self.left_out.push((guid.to_string(), why));
        }
    }
}

/// An export's time by phase, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Took {
    /// The heartbeat just before it: the service's cycle's, or `ad-sync-agent export`'s; 0
    /// where something else ran between them (`run --once` applies the cloud's changes first).
    pub heartbeat_ms: u64,
    /// Connecting to the DC and logging on.
    pub connect_ms: u64,
    /// Finding the service account (never exported).
    pub account_ms: u64,
    /// Asking the cloud where it stands (its cursor; on a first export, what it holds).
    pub cursor_ms: u64,
    /// Reading AD's changes and sending them, page by page.
    pub changes_ms: u64,
    /// The full reconciliation, when one ran.
    pub reconcile_ms: u64,
}

/// Milliseconds since `t`.
pub fn ms(t: std::time::Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// What only the DC can say about one user: whether it is a member of a scope group, however
/// nested (`LDAP_MATCHING_RULE_IN_CHAIN`), and whether it matches the scope's filter (`None`
/// when the scope has no groups, or no filter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DcAnswers {
    pub in_groups: Option<bool>,
    pub matches_filter: Option<bool>,
}

/// The filter that selects, among `terms` (objectGUID terms), the members of any of `groups`
/// however nested: `memberOf` with the in-chain rule, which the DC evaluates through every
/// level of nesting (and through its own index, not by the agent expanding groups).
pub fn in_groups_filter(terms: &str, groups: &[ad_sync_core::dn::Dn]) -> String {
    format!(
        "(&(|{terms}){})",
        ad_sync_core::source_scope::in_chain_clause(groups)
    )
}

/// The scope's decision on `obj`, read now as a user or a group (`kind`), with the DC's
/// `answers` (users only): the whole record of the map's rows of `kind` when it is sent (a
/// mapped field without a value in AD is sent empty, so it is cleared in the cloud), or why it
/// is not.
fn decide_and_map(
    obj: &Obj,
    kind: Kind,
    values: &BTreeMap<String, Vec<String>>,
    answers: DcAnswers,
    scope: &Scope,
    mapping: &Mapping,
) -> Result<BTreeMap<String, String>, String> {
    // What the agent made or took over for the cloud is the cloud's: its changes came from the
    // cloud and never travel back (no ping-pong).
    if let Some(id) = obj.marker_id() {
        return Err(if kind == Kind::Group {
            format!(
                "it is the cloud group {id}'s AD group, which the agent manages: the cloud is its authority"
            )
        } else {
            format!(
                "it is the cloud user {id}'s account, which the agent manages: the cloud is its authority"
            )
        });
    }
    let candidate = ad_sync_core::source_scope::Candidate {
        guid: &obj.guid,
        dn: obj.parsed.as_ref(),
        sam: &obj.sam,
        computer: kind == Kind::User && !obj.is_user,
        rid: obj.rid,
        critical: obj.critical,
        protected: obj.protected.as_deref(),
        in_groups: answers.in_groups,
        matches_filter: answers.matches_filter,
    };
    match decide(scope, &candidate) {
        Verdict::Export | Verdict::Named(_) => {
            let record = mapping.record(kind, values);
            Ok(mapping
                .rows(kind)
                .filter(|(_, attr)| attr.is_some())
                .map(|(row, _)| {
                    (
                        row.field.to_string(),
                        record.get(row.field).cloned().unwrap_or_default(),
                    )
                })
                .collect())
        }
        Verdict::Out(why) | Verdict::Never(why) => Err(why),
    }
}

/// What the cloud is sent for one changed user. `obj` is the user as read now by its GUID
/// (`None`: it cannot be read, so it is gone), with `values` its attributes; `deleted` is what
/// DirSync said. Returns the change, and why the scope left it out when it did.
pub fn plan_user(
    guid: &str,
    deleted: bool,
    obj: Option<&Obj>,
    values: &BTreeMap<String, Vec<String>>,
    answers: DcAnswers,
    scope: &Scope,
    mapping: &Mapping,
) -> (SourceUser, Option<String>) {
    let gone = gone_user(guid);
    let Some(obj) = obj.filter(|_| !deleted) else {
        return (gone, None);
    };
    match decide_and_map(obj, Kind::User, values, answers, scope, mapping) {
        Ok(fields) => (
            SourceUser {
                guid: guid.to_string(),
                deleted: false,
                enabled: Some(obj.enabled()),
                fields,
            },
            None,
        ),
        Err(why) => (gone, Some(why)),
    }
}

/// A group's membership as the agent read it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Members {
    /// Nothing known of it now (not changed, or too large to send whole).
    #[default]
    Unknown,
    /// The whole list, by objectGUID.
    Whole(Vec<String>),
    /// The values added and removed since the cloud's cursor, by objectGUID.
    Changed {
        added: Vec<String>,
        removed: Vec<String>,
    },
}

/// What the cloud is sent for one changed group, as [`plan_user`] decides for a user. Groups
/// are scoped by the containers and the rules no scope overrides (built-in, protected and
/// privileged groups only when named); the scope's groups and filter never leave a group out
/// (they select users).
pub fn plan_group(
    guid: &str,
    deleted: bool,
    obj: Option<&Obj>,
    values: &BTreeMap<String, Vec<String>>,
    members: Members,
    scope: &Scope,
    mapping: &Mapping,
) -> (SourceGroup, Option<String>) {
    let gone = gone_group(guid);
    let Some(obj) = obj.filter(|_| !deleted) else {
        return (gone, None);
    };
    match decide_and_map(
        obj,
        Kind::Group,
        values,
        DcAnswers::default(),
        scope,
        mapping,
    ) {
        Ok(fields) => {
            let (whole, added, removed) = match members {
                Members::Unknown => (None, Vec::new(), Vec::new()),
                Members::Whole(all) => (Some(all), Vec::new(), Vec::new()),
                Members::Changed { added, removed } => (None, added, removed),
            };
            (
                SourceGroup {
                    guid: guid.to_string(),
                    deleted: false,
                    fields,
                    members: whole,
                    added,
                    removed,
                },
                None,
            )
        }
        Err(why) => (gone, Some(why)),
    }
}

/// What the cloud is sent for one changed contact, as [`plan_user`] decides for a user.
/// Contacts are scoped by the containers alone (the scope's groups and filter select users);
/// the whole record of the map's contact rows is sent each time.
pub fn plan_contact(
    guid: &str,
    deleted: bool,
    obj: Option<&Obj>,
    values: &BTreeMap<String, Vec<String>>,
    scope: &Scope,
    mapping: &Mapping,
) -> (SourceContact, Option<String>) {
    let gone = SourceContact {
        guid: guid.to_string(),
        deleted: true,
        fields: BTreeMap::new(),
    };
    let Some(obj) = obj.filter(|_| !deleted) else {
        return (gone, None);
    };
    match decide_and_map(
        obj,
        Kind::Contact,
        values,
        DcAnswers::default(),
        scope,
        mapping,
    ) {
        Ok(fields) => (
            SourceContact {
                guid: guid.to_string(),
                deleted: false,
                fields,
            },
            None,
        ),
        Err(why) => (gone, Some(why)),
    }
}

/// The most members a group is sent with whole (the reconciliation's list): about 40 bytes
/// each, well inside one request's body. A larger group's membership reaches the cloud as
/// DirSync's added and removed values only.
pub const WHOLE_MEMBERS_MAX: usize = 4000;

/// The DirSync search: every user and group object (computers are users too; the scope leaves
/// them out).
const FILTER: &str = "(|(objectClass=user)(objectClass=group)(objectClass=contact))";
/// What DirSync watches besides the mapped attributes. DirSync returns an object only when one
/// of the attributes asked for changed, so these are everything a decision depends on: whether
/// it is gone and where it is, its state and what makes it protected. Not its password's or
/// lockout's timestamps, which change often and decide nothing here.
const WATCHED: &[&str] = &[
    "objectGUID",
    "isDeleted",
    "name",
    "parentGUID",
    "sAMAccountName",
    "userAccountControl",
    "adminCount",
    "isCriticalSystemObject",
    "primaryGroupID",
    "msDS-AllowedToDelegateTo",
    "member",
];

/// The most bytes of users in one request: the cloud's body limit, less room for the cursor
/// and the new cookie (at most 16 KiB each, base64) and the request's other fields.
pub const PART_BYTES: usize = ad_sync_core::cloud::api::MAX_BODY_BYTES - 40 * 1024;

/// `users` cut into consecutive parts of at most `MAX_SOURCE_ITEMS` users and at most
/// `budget` bytes of JSON each (a user alone larger than `budget` is a part of its own; the
/// cloud then refuses that request by its size, and says so).
pub fn parts(users: &[Item], budget: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, u) in users.iter().enumerate() {
        // Its JSON and the comma before it.
        let size = u.json_len() + 1;
        if i > start && (i - start == MAX_SOURCE_ITEMS || bytes + size > budget) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < users.len() {
        out.push(start..users.len());
    }
    out
}

/// One object of an export batch: a user or a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    User(SourceUser),
    Group(SourceGroup),
    Contact(SourceContact),
}

impl Item {
    pub fn guid(&self) -> &str {
        match self {
            Item::User(u) => &u.guid,
            Item::Group(g) => &g.guid,
            Item::Contact(c) => &c.guid,
        }
    }

    fn json_len(&self) -> usize {
        match self {
            Item::User(u) => serde_json::to_vec(u),
            Item::Group(g) => serde_json::to_vec(g),
            Item::Contact(c) => serde_json::to_vec(c),
        }
        .map_or(0, |v| v.len())
    }

    /// Whether the cloud is told it is gone.
    pub fn deleted(&self) -> bool {
        match self {
            Item::User(u) => u.deleted,
            Item::Group(g) => g.deleted,
            Item::Contact(c) => c.deleted,
        }
    }
}

/// The cloud's end of an export: sends batches from the cloud's cursor, and asks which users
/// and groups it holds from AD.
pub struct Link<'a> {
    pub client: &'a CloudClient,
    pub credential: &'a Secret,
    /// The DC the changes are read from.
    pub dc: String,
    /// The cloud's cursor, moved by each batch with a cookie.
    pub after: Option<String>,
}

impl Link<'_> {
    /// Sends `users` in parts of at most 1,000: every part `partial` (committed, the cursor
    /// stays), except the last when `cookie` is given, which moves the cursor there.
    async fn send(
        &mut self,
        users: Vec<Item>,
        cookie: Option<String>,
        report: &mut ExportReport,
    ) -> Result<(), String> {
        if users.is_empty() && cookie.is_none() {
            return Ok(());
        }
        let parts: Vec<&[Item]> = if users.is_empty() {
            vec![&[]]
        } else {
            parts(&users, PART_BYTES)
                .into_iter()
                .map(|r| &users[r])
                .collect()
        };
        let n = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            let moves = i + 1 == n && cookie.is_some();
            let req = SourceRequest {
                after: self.after.clone(),
                cookie: if moves {
                    cookie.clone().unwrap_or_default()
                } else {
                    String::new()
                },
                dc: self.dc.clone(),
                users: part
                    .iter()
                    .filter_map(|i| match i {
                        Item::User(u) => Some(u.clone()),
                        _ => None,
                    })
                    .collect(),
                groups: part
                    .iter()
                    .filter_map(|i| match i {
                        Item::Group(g) => Some(g.clone()),
                        _ => None,
                    })
                    .collect(),
                contacts: part
                    .iter()
                    .filter_map(|i| match i {
                        Item::Contact(c) => Some(c.clone()),
                        _ => None,
                    })
                    .collect(),
                partial: !moves,
            };
            let resp: SourceResponse = self
                .client
                .source_changes(self.credential, &req)
                .await
                .map_err(|e| format!("sending AD's changes to the cloud: {e}; {}", e.fix()))?;
            count(report, &resp);
        }
        if let Some(c) = cookie {
            self.after = Some(c);
        }
        Ok(())
    }

    /// Those of `guids` the cloud holds from AD, live (not already suspended as deleted), and
    /// how many live users it holds from AD in all.
    async fn live(&self, guids: &[String]) -> Result<(HashMap<String, SourceHeld>, usize), String> {
        let mut out = HashMap::new();
        let mut live = 0;
        for chunk in guids.chunks(MAX_SOURCE_ITEMS) {
            let r = self
                .client
                .source_lookup(self.credential, chunk)
                .await
                .map_err(|e| {
                    format!("asking the cloud which AD users it holds: {e}; {}", e.fix())
                })?;
            live = r.live;
            for u in r.users.into_iter().filter(|u| !u.deleted) {
                if let Some(g) = ad_sync_core::guid::normalize_guid_string(&u.guid) {
                    out.insert(g, u);
                }
            }
        }
        Ok((out, live))
    }
}

/// A user the cloud holds from AD, live, that is now deleted in AD or out of the scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Departure {
    pub guid: String,
    /// Its cloud id and name.
    pub id: String,
    pub name: String,
    /// Its DN in AD (empty when it is deleted).
    pub dn: String,
    pub why: String,
    /// A user (suspended in the cloud), a group or a contact (marked deleted).
    pub kind: Kind,
}

impl Departure {
    /// What the cloud is sent for it.
    fn item(&self) -> Item {
        gone_item(&self.guid, self.kind)
    }
}

/// What kind of object the cloud says it holds.
fn held_kind(h: &SourceHeld) -> Kind {
    match (h.group, h.contact) {
        (true, _) => Kind::Group,
        (_, true) => Kind::Contact,
        _ => Kind::User,
    }
}

/// The deletion threshold for AD as a source: of `departures`, those `approved` (objectGUIDs)
/// always go; the others go when `spent` (suspensions sent within the window) plus their
/// number stays within the budget for `live` users (`policy::budget`, or `allow` for this run),
/// and are all held when it does not, as the cloud → AD direction does. Returns (send, hold,
/// the threshold that held them).
pub fn budget_departures(
    departures: Vec<Departure>,
    approved: &HashSet<String>,
    spent: usize,
    live: usize,
    sync: &ad_sync_core::answers::Sync,
    allow: Option<usize>,
) -> (
    Vec<Departure>,
    Vec<Departure>,
    Option<crate::plan::OverThreshold>,
) {
    let (mut send, rest): (Vec<Departure>, Vec<Departure>) = departures
        .into_iter()
        .partition(|d| approved.contains(&d.guid));
    let (limit, spent) = match allow {
        Some(n) => (n, 0),
        None => (ad_sync_core::policy::budget(live, sync), spent),
    };
    if !rest.is_empty() && spent + rest.len() > limit {
        let over = crate::plan::OverThreshold {
            planned: rest.len(),
            spent,
            limit,
            managed: live,
            window_hours: sync.deletion_window_hours,
        };
        return (send, rest, Some(over));
    }
    send.extend(rest);
    (send, Vec::new(), None)
}

/// What the deletion threshold needs from the agent: its state (held suspensions, what was
/// spent), the policy and this run's allowance.
pub struct Threshold<'a> {
    pub state: &'a mut State,
    pub sync: &'a ad_sync_core::answers::Sync,
    pub allow: Option<usize>,
}

impl Threshold<'_> {
    /// Of the users the scope says are gone (objectGUID, DN, why), those the cloud holds live,
    /// through the threshold: returns the suspensions to send now (recorded as spent when
    /// sent: `sent`), holds the others in the state. Users the cloud never had, or has already
    /// suspended, are nothing to send.
    async fn settle(
        &mut self,
        link: &Link<'_>,
        gone: Vec<(String, String, String)>,
        report: &mut ExportReport,
    ) -> Result<Vec<Departure>, String> {
        if gone.is_empty() {
            return Ok(Vec::new());
        }
        let guids: Vec<String> = gone.iter().map(|g| g.0.clone()).collect();
        let (live, total) = link.live(&guids).await?;
        let departures: Vec<Departure> = gone
            .into_iter()
            .filter_map(|(guid, dn, why)| {
                live.get(&guid).map(|h| Departure {
                    id: h.id.clone(),
                    name: h.name.clone(),
                    guid,
                    dn,
                    why,
                    kind: held_kind(h),
                })
            })
            .collect();
        let held = self.state.held_exports().map_err(|e| e.to_string())?;
        let approved: HashSet<String> = held
            .iter()
            .filter(|(_, h)| h.approved)
            .map(|(g, _)| g.clone())
            .collect();
        let since =
            ad_sync_core::time_fmt::now_unix() - i64::from(self.sync.deletion_window_hours) * 3600;
        let spent = self.state.export_spent(since).map_err(|e| e.to_string())?;
        let (send, hold, over) =
            budget_departures(departures, &approved, spent, total, self.sync, self.allow);
        if !hold.is_empty() {
            let now = ad_sync_core::time_fmt::now_unix();
            let items: Vec<(String, crate::state::Held)> = hold
                .iter()
                .map(|d| (d.guid.clone(), held_record(d, now)))
                .collect();
            self.state.hold_exports(&items).map_err(|e| e.to_string())?;
            report.held_now.extend(hold.iter().map(|d| d.guid.clone()));
            report.held = report.held_now.len();
            report.blocked = over.or(report.blocked.take());
        }
        Ok(send)
    }

    /// After `sent` went to the cloud: no longer held, and counted against the budget unless
    /// an administrator approved them (approved ones are not counted, as in the cloud → AD
    /// direction).
    fn sent(&mut self, sent: &[Departure]) -> Result<(), String> {
        if sent.is_empty() {
            return Ok(());
        }
        let approved: HashSet<String> = self
            .state
            .held_exports()
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|(_, h)| h.approved)
            .map(|(g, _)| g)
            .collect();
        let guids: Vec<String> = sent.iter().map(|d| d.guid.clone()).collect();
        let counted: Vec<String> = guids
            .iter()
            .filter(|g| !approved.contains(*g))
            .cloned()
            .collect();
        self.state
            .record_export_suspensions(&counted)
            .map_err(|e| e.to_string())?;
        self.state
            .release_exports(&guids)
            .map_err(|e| e.to_string())
    }

    /// Users back in the scope are no longer held.
    fn back(&mut self, guids: &[String]) -> Result<(), String> {
        if guids.is_empty() {
            return Ok(());
        }
        let held: HashSet<String> = self
            .state
            .held_exports()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(g, _)| g)
            .collect();
        let back: Vec<String> = guids
            .iter()
            .filter(|g| held.contains(*g))
            .cloned()
            .collect();
        self.state.release_exports(&back).map_err(|e| e.to_string())
    }
}

/// The held record of a suspension (what `pending` lists and approves by cloud id).
fn held_record(d: &Departure, now: i64) -> crate::state::Held {
    crate::state::Held {
        id: d.id.clone(),
        kind: match d.kind {
            Kind::Group => crate::state::HeldKind::AdGroup,
            Kind::Contact => crate::state::HeldKind::AdContact,
            Kind::User => crate::state::HeldKind::AdUser,
        },
        name: d.name.clone(),
        dn: if d.dn.is_empty() {
            format!("(objectGUID {}, deleted in AD)", d.guid)
        } else {
            d.dn.clone()
        },
        action: crate::plan::Action::Suspend,
        what: match d.kind {
            Kind::Group => format!(
                "mark the cloud group {} deleted (kept 30 days, with its members)",
                d.name
            ),
            Kind::Contact => format!("mark the cloud contact {} deleted (kept 30 days)", d.name),
            Kind::User => format!("suspend the cloud user {} (kept 30 days)", d.name),
        },
        why: d.why.clone(),
        since: now,
        approved: false,
        user: None,
        group: None,
    }
}

/// What the cloud is sent for a user, group or contact gone from AD or the scope.
fn gone_item(guid: &str, kind: Kind) -> Item {
    match kind {
        Kind::Group => Item::Group(gone_group(guid)),
        Kind::Contact => Item::Contact(SourceContact {
            guid: guid.to_string(),
            deleted: true,
            fields: BTreeMap::new(),
        }),
        Kind::User => Item::User(gone_user(guid)),
    }
}

fn gone_user(guid: &str) -> SourceUser {
    SourceUser {
        guid: guid.to_string(),
        deleted: true,
        enabled: None,
        fields: BTreeMap::new(),
    }
}

fn gone_group(guid: &str) -> SourceGroup {
    SourceGroup {
        guid: guid.to_string(),
        deleted: true,
        ..SourceGroup::default()
    }
}

/// The attributes read for each object: what the scope rules need and the mapped ones of
/// users, groups and contacts.
fn read_attributes(mapping: &Mapping) -> Vec<&str> {
    let mut read_attrs: Vec<&str> = ATTRS.to_vec();
    for a in mapping
        .attributes(Kind::User)
        .into_iter()
        .chain(mapping.attributes(Kind::Group))
        .chain(mapping.attributes(Kind::Contact))
    {
        if !read_attrs.iter().any(|r| r.eq_ignore_ascii_case(a)) {
            read_attrs.push(a);
        }
    }
    read_attrs
}

/// The DC's answers for the objects `terms` (objectGUID terms) select: which are members of
/// the scope's groups, however nested, and which match its filter.
async fn ask_dc(
    ad: &Ad,
    scope: &Scope,
    terms: &str,
    in_groups: &mut HashSet<String>,
    matches: &mut HashSet<String>,
) -> Result<(), String> {
    if !scope.groups.is_empty() {
        let members = ad
            .search_with(&in_groups_filter(terms, &scope.groups), &["objectGUID"])
            .await
            .map_err(|e| e.to_string())?;
        for e in members {
            in_groups.insert(guid_string(&object(&e).guid));
        }
    }
    if let Some(f) = &scope.filter {
        let matching = ad
            .search_with(&format!("(&(|{terms}){f})"), &["objectGUID"])
            .await
            .map_err(|e| format!("the scope's filter {f}: {e}"))?;
        for e in matching {
            matches.insert(guid_string(&object(&e).guid));
        }
    }
    Ok(())
}

fn dc_answers(
    scope: &Scope,
    guid: &str,
    in_groups: &HashSet<String>,
    matches: &HashSet<String>,
) -> DcAnswers {
    DcAnswers {
        in_groups: (!scope.groups.is_empty()).then(|| in_groups.contains(guid)),
        matches_filter: scope.filter.as_ref().map(|_| matches.contains(guid)),
    }
}

/// Suspensions an administrator approved (`pending --approve`) since the last export: sent
/// first, whatever the budget.
async fn send_approved(
    link: &mut Link<'_>,
    threshold: &mut Threshold<'_>,
    report: &mut ExportReport,
) -> Result<(), String> {
    let approved: Vec<Departure> = threshold
        .state
        .held_exports()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|(_, h)| h.approved)
        .map(|(guid, h)| Departure {
            guid,
            id: h.id,
            name: h.name,
            dn: h.dn,
            why: h.why,
            kind: match h.kind {
                crate::state::HeldKind::AdGroup => Kind::Group,
                crate::state::HeldKind::AdContact => Kind::Contact,
                _ => Kind::User,
            },
        })
        .collect();
    if approved.is_empty() {
        return Ok(());
    }
    let users = approved.iter().map(Departure::item).collect();
    link.send(users, None, report).await?;
    threshold.sent(&approved)
}

/// Who holds power in the domain (`Tier0`: privileged groups' members however nested, and
/// accounts with power from the ACLs of the domain's key objects), read once per export and
/// only when something is to be decided. An entry's own marks (adminCount, a direct privileged
/// group) are not enough: Samba never runs SDProp, and Windows runs it hourly, so a user just
/// nested into Domain Admins carries no mark yet. What cannot be proven (a read the DC
/// refused, a power every account holds) stops the export: nothing is sent, rather than
/// privileged accounts, or everyone as gone.
#[derive(Default)]
pub struct Privileged {
    tier0: Option<ad_sync_core::tier0::Tier0>,
}

impl Privileged {
    /// `obj` with what makes it privileged in its `protected`, as the scope rules read it.
    async fn mark(&mut self, ad: &Ad, obj: &mut Obj) -> Result<(), String> {
        if self.tier0.is_none() {
            let t = ad.tier0().await.map_err(|e| e.to_string())?;
            if let Some(why) = t.blanket() {
                return Err(format!(
                    "who holds power in the domain could not be proven ({why}), so no account can be shown to be unprivileged; nothing was sent. Fix what it names, then the next export sends everything"
                ));
            }
            self.tier0 = Some(t);
        }
        if let Some(t) = &self.tier0 {
            obj.protected = t.why(obj);
        }
        Ok(())
    }
}

/// What decides each object an export reads: the scope, the attribute map, and who holds
/// power in the domain.
pub struct Rules<'a> {
    pub scope: &'a Scope,
    pub mapping: &'a Mapping,
    pub privileged: Privileged,
}

/// One part of a DirSync page: each changed, not deleted user read whole by its GUID (100 per
/// search, with the DC's answers on the scope's groups and filter), then decided. Returns the
/// records to send and those gone (objectGUID, DN, why).
async fn read_and_decide(
    ad: &Ad,
    part: &[Delta],
    read_attrs: &[&str],
    scope: &Scope,
    mapping: &Mapping,
    privileged: &mut Privileged,
    report: &mut ExportReport,
) -> Result<(Vec<Item>, Vec<(String, String, String)>), String> {
    let wanted: Vec<&Delta> = part.iter().filter(|d| !d.deleted).collect();
    let mut read: HashMap<String, (Obj, BTreeMap<String, Vec<String>>)> = HashMap::new();
    let mut in_groups: HashSet<String> = HashSet::new();
    let mut matches: HashSet<String> = HashSet::new();
    for chunk in wanted.chunks(100) {
        let terms: String = chunk
            .iter()
            .filter_map(|d| ad_sync_core::directory::object::parse_guid_string(&d.guid))
            .map(|g| guid_filter(&g))
            .collect();
        let entries = ad
            .search_with(&format!("(|{terms})"), read_attrs)
            .await
            .map_err(|e| e.to_string())?;
        for e in entries {
            let mut o = object(&e);
            privileged.mark(ad, &mut o).await?;
            let values: BTreeMap<String, Vec<String>> = e.attrs.into_iter().collect();
            read.insert(guid_string(&o.guid), (o, values));
        }
        ask_dc(ad, scope, &terms, &mut in_groups, &mut matches).await?;
    }
    let guids = member_guids(ad, part, &read).await?;
    let mut users = Vec::with_capacity(part.len());
    let mut gone = Vec::new();
    let none = BTreeMap::new();
    for d in part {
        let (obj, values) = match read.get(&d.guid) {
            Some((o, v)) => (Some(o), v),
            None => (None, &none),
        };
        let (user, why) = if obj.is_some_and(|o| o.is_group) {
            let members = delta_members(d, &guids);
            let (g, why) = plan_group(&d.guid, d.deleted, obj, values, members, scope, mapping);
            (Item::Group(g), why)
        } else if obj.is_some_and(|o| o.is_contact) {
            let (c, why) = plan_contact(&d.guid, d.deleted, obj, values, scope, mapping);
            (Item::Contact(c), why)
        } else {
            let answers = dc_answers(scope, &d.guid, &in_groups, &matches);
            let (u, why) = plan_user(&d.guid, d.deleted, obj, values, answers, scope, mapping);
            (Item::User(u), why)
        };
        if user.deleted() {
            let dn = obj.map(|o| o.dn.clone()).unwrap_or_default();
            let why = why.clone().unwrap_or_else(|| "deleted in AD".into());
            gone.push((d.guid.clone(), dn, why));
        } else {
            users.push(user);
        }
        if let Some(why) = why {
            report.leave_out(&d.guid, obj, scope, why);
        }
    }
    Ok((users, gone))
}

/// The member DNs DirSync named in `part`'s groups (added, removed, or a whole list), by
/// objectGUID: from the groups as just read (their members carry it, read with the extended-DN
/// control), the others asked of the DC, 100 at a time. A DN nothing answers for (a member
/// deleted since) is left out: the member's own deletion reaches the cloud by itself.
async fn member_guids(
    ad: &Ad,
    part: &[Delta],
    read: &HashMap<String, (Obj, BTreeMap<String, Vec<String>>)>,
) -> Result<HashMap<String, String>, String> {
    let mut known: HashMap<String, String> = HashMap::new();
    for (o, _) in read.values().filter(|(o, _)| o.is_group) {
        for (g, dn) in &o.members {
            known.insert(dn.to_lowercase(), guid_string(g));
        }
    }
    let mut ask: Vec<String> = Vec::new();
    for d in part {
        for dn in delta_member_dns(d) {
            if !known.contains_key(&dn.to_lowercase()) && !ask.contains(&dn) {
                ask.push(dn);
            }
        }
    }
    for chunk in ask.chunks(100) {
        let terms: String = chunk
            .iter()
            .map(|dn| format!("(distinguishedName={})", ldap3::ldap_escape(dn.as_str())))
            .collect();
        let found = ad
            .search_with(&format!("(|{terms})"), &["objectGUID"])
            .await
            .map_err(|e| format!("reading the groups' changed members: {e}"))?;
        for e in found {
            let o = object(&e);
            known.insert(o.dn.to_lowercase(), guid_string(&o.guid));
        }
    }
    Ok(known)
}

/// Every member DN a delta names (a whole `member` list, or its added and removed values).
fn delta_member_dns(d: &Delta) -> Vec<String> {
    let mut out: Vec<String> = d
        .values
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("member"))
        .flat_map(|(_, v)| v.iter().cloned())
        .collect();
    for (k, l) in &d.links {
        if k.eq_ignore_ascii_case("member") {
            out.extend(l.added.iter().cloned());
            out.extend(l.removed.iter().cloned());
        }
    }
    out
}

/// A changed group's membership as DirSync gave it, by objectGUID (`guids`: DN, lower case,
/// to objectGUID). A DN without a GUID is left out.
pub fn delta_members(d: &Delta, guids: &HashMap<String, String>) -> Members {
    let by_dn = |dns: &[String]| -> Vec<String> {
        dns.iter()
            .filter_map(|dn| guids.get(&dn.to_lowercase()).cloned())
            .collect()
    };
    if let Some((_, all)) = d
        .values
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("member"))
    {
        return Members::Whole(by_dn(all));
    }
    match d
        .links
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("member"))
    {
        Some((_, l)) => Members::Changed {
            added: by_dn(&l.added),
            removed: by_dn(&l.removed),
        },
        None => Members::Unknown,
    }
}

/// How AD's changes are read: the DirSync control, or `uSNChanged` where the DC refuses
/// DirSync (`directory::usn`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reader {
    #[default]
    Dirsync,
    Usn,
}

/// Which reader an export uses, and from where: `forced` is `[source] change_detection =
/// "usn"`; `cookie` the cloud's cursor when it is this DC's. A cursor a reader wrote is read on
/// by that reader (a `usn1:` one by `uSNChanged`), so an export that fell back stays on it
/// until the cursor is lost or the DC changes (then a full read tries DirSync again, unless it
/// is forced off). Returns the reader and the watermark or cookie to start from (empty: a full
/// read).
pub fn choose_reader(forced: bool, cookie: Option<&str>) -> (Reader, Option<String>) {
    match cookie {
        Some(c) if usn::parse_cookie(c).is_some() => (Reader::Usn, Some(c.to_string())),
        // A DirSync cookie cannot be read on by uSNChanged: a full read.
        Some(_) if forced => (Reader::Usn, None),
        Some(c) => (Reader::Dirsync, Some(c.to_string())),
        None if forced => (Reader::Usn, None),
        None => (Reader::Dirsync, None),
    }
}

/// What an export hands the cloud as it reads: each part of a page of changes read whole,
/// decided and sent (`partial`), then the page's departures through the threshold with the
/// cookie that follows the page, last.
struct Pager<'a, 'b, 'c, 'd> {
    ad: &'a Ad,
    link: &'a mut Link<'b>,
    rules: &'a mut Rules<'c>,
    threshold: &'a mut Threshold<'d>,
    read_attrs: Vec<&'a str>,
    report: ExportReport,
    sent_whole: HashSet<String>,
    gone: Vec<(String, String, String)>,
}

impl Pager<'_, '_, '_, '_> {
    /// Handles changes 1,000 at a time (a page can hold a whole directory: Samba answers
    /// DirSync in one page, a USN read is paged by 1,000): what is held is one part, the users
    /// read whole for it and their records. Each part's objects are sent at once (`partial`).
    async fn changes(&mut self, deltas: &[Delta]) -> Result<(), String> {
        self.report.changed += deltas.len();
        for part in deltas.chunks(MAX_SOURCE_ITEMS) {
            let (items, part_gone) = read_and_decide(
                self.ad,
                part,
                &self.read_attrs,
                self.rules.scope,
                self.rules.mapping,
                &mut self.rules.privileged,
                &mut self.report,
            )
            .await?;
            self.gone.extend(part_gone);
            let present: Vec<String> = items.iter().map(|u| u.guid().to_string()).collect();
            self.threshold.back(&present)?;
            self.link.send(items, None, &mut self.report).await?;
            self.sent_whole.extend(present);
        }
        Ok(())
    }

    /// The end of a page: only objects the cloud holds are sent as gone, through the
    /// threshold (a full read's thousands of out-of-scope accounts cost one lookup, not a
    /// suspension each), with the cookie that follows the page.
    async fn end_of_page(&mut self, cookie: String) -> Result<(), String> {
        self.report.pages += 1;
        let gone = std::mem::take(&mut self.gone);
        let leaving = self
            .threshold
            .settle(self.link, gone, &mut self.report)
            .await?;
        let items = leaving.iter().map(Departure::item).collect();
        self.link
            .send(items, Some(cookie), &mut self.report)
            .await?;
        self.threshold.sent(&leaving)
    }
}

/// Reads AD's changes since the cloud's cursor and sends them, page by page, each with its
/// cookie; users that left go through the deletion threshold. `link.dc` names the DC the
/// connection is to. With DirSync, unless `forced_usn`; where the DC refuses DirSync, by
/// `uSNChanged` (`report.reader` and `report.fallback` say so). Returns the report and the
/// objectGUIDs sent whole (a reconciliation right after need not send them again).
pub async fn export(
    ad: &Ad,
    link: &mut Link<'_>,
    rules: &mut Rules<'_>,
    threshold: &mut Threshold<'_>,
    forced_usn: bool,
) -> Result<(ExportReport, HashSet<String>), String> {
    let mapping = rules.mapping;
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let asked = std::time::Instant::now();
    let cursor: SourceCursor = link
        .client
        .source_cursor(link.credential)
        .await
        .map_err(|e| format!("reading the cloud's AD cursor: {e}; {}", e.fix()))?;
    let same_dc = cursor
        .dc
        .as_deref()
        .is_some_and(|d| d.eq_ignore_ascii_case(&link.dc));
    let (reader, start) = choose_reader(forced_usn, cursor.cookie.as_deref().filter(|_| same_dc));
    link.after = cursor.cookie.clone();
    let mut report = ExportReport {
        full: start.is_none(),
        ..ExportReport::default()
    };
    report.took.cursor_ms = ms(asked);
    let reading = std::time::Instant::now();
    send_approved(link, threshold, &mut report).await?;
    let mut watched: Vec<&str> = WATCHED.to_vec();
    for a in mapping
        .attributes(Kind::User)
        .into_iter()
        .chain(mapping.attributes(Kind::Group))
        .chain(mapping.attributes(Kind::Contact))
    {
        if !watched.iter().any(|w| w.eq_ignore_ascii_case(a)) {
            watched.push(a);
        }
    }
    if start.is_none() {
        return full_read(ad, link, rules, threshold, reader, report, reading).await;
    }
    let mut pager = Pager {
        ad,
        link,
        rules,
        threshold,
        read_attrs: read_attributes(mapping),
        report,
        sent_whole: HashSet::new(),
        gone: Vec::new(),
    };
    if reader == Reader::Dirsync {
        let cookie: Vec<u8> = match &start {
            Some(c) => b64.decode(c).map_err(|e| {
                format!("the cloud's AD cursor is not a cookie this agent sent ({e})")
            })?,
            None => Vec::new(),
        };
        // Objects are read again whole by objectGUID: of DirSync's values only the member
        // lists (whole, or added and removed) are used.
        let mut dc = dirsync::Dc::new(ad.ldap(), &ad.domain_dn, FILTER, &watched, ad.timeout())?
            .keeping(&["member"]);
        let p = &mut pager;
        let drained = dirsync::drain(&mut dc, &cookie, async |deltas: Vec<Delta>, answer| {
            p.changes(&deltas).await?;
            p.end_of_page(b64.encode(&answer.cookie)).await
        })
        .await;
        match drained {
            Ok(_) => {}
            // Refused before anything was read: the DC will not give this account DirSync
            // any more. A DirSync cookie cannot be read on by uSNChanged: a full read.
            Err(dirsync::DrainError::Ldap(e))
                if pager.report.pages == 0 && usn::refuses_dirsync(&e) =>
            {
                let mut report = std::mem::take(&mut pager.report);
                refused_dirsync(&mut report, &e);
                return full_read(ad, link, rules, threshold, Reader::Usn, report, reading).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    if reader == Reader::Usn {
        let from = start.as_deref().and_then(usn::parse_cookie).unwrap_or(0);
        pager.report.full = from == 0;
        let mut read = usn::Read::start(
            ad.ldap(),
            ad.timeout(),
            &ad.domain_dn,
            FILTER,
            &watched,
            from,
        )
        .await?;
        while let Some(deltas) = read.next_page().await? {
            pager.changes(&deltas).await?;
        }
        pager.end_of_page(usn::cookie(read.highest)).await?;
    }
    pager.report.reader = reader;
    pager.report.took.changes_ms = ms(reading);
    Ok((pager.report, pager.sent_whole))
}

/// Says in the report that the DC refused DirSync and AD is read by `uSNChanged`.
fn refused_dirsync(report: &mut ExportReport, e: &impl std::fmt::Display) {
    tracing::warn!(error = %e, "the DC refused DirSync; reading AD's changes by uSNChanged");
    report.fallback = Some(format!(
        "the DC refused DirSync ({e}); changes are read by uSNChanged, whole objects and whole member lists"
    ));
}

/// A full read (no cursor yet, another DC's, or a reader that changed): where the DC's changes
/// stand is taken first (a DirSync cookie read without one object, or the highest USN), then
/// the scope is read page by page as the reconciliation reads it (each object whole, once:
/// nothing is read again by objectGUID) and sent, what the cloud holds that the read did not
/// find goes through the threshold, and the position is sent last as the cloud's cursor. A
/// change made during the read is after the position, so the next export sees it again:
/// sent twice, never missed. AD is never held whole, whatever its size: one page of 1,000
/// (Samba answers a DirSync read in one page however large, so a full read by DirSync would
/// hold the whole directory in memory).
async fn full_read(
    ad: &Ad,
    link: &mut Link<'_>,
    rules: &mut Rules<'_>,
    threshold: &mut Threshold<'_>,
    mut reader: Reader,
    mut report: ExportReport,
    reading: std::time::Instant,
) -> Result<(ExportReport, HashSet<String>), String> {
    use base64::Engine as _;
    report.full = true;
    let mut position = None;
    if reader == Reader::Dirsync {
        let mut dc = dirsync::Dc::new(
            ad.ldap(),
            &ad.domain_dn,
            dirsync::NOTHING,
            &["objectGUID"],
            ad.timeout(),
        )?;
        match dirsync::position(&mut dc).await {
            Ok(cookie) => {
                position = Some(base64::engine::general_purpose::STANDARD.encode(cookie));
            }
            Err(dirsync::DrainError::Ldap(e)) if usn::refuses_dirsync(&e) => {
                refused_dirsync(&mut report, &e);
                reader = Reader::Usn;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    let position = match position {
        Some(p) => p,
        None => usn::cookie(
            usn::highest(ad.ldap(), ad.timeout())
                .await
                .map_err(|e| format!("reading the DC's highest USN: {e}"))?,
        ),
    };
    report.reader = reader;
    report.took.changes_ms = ms(reading);
    // The scope read whole and sent (the reconciliation), then the position as the cursor.
    let reconciling = std::time::Instant::now();
    reconcile(ad, link, rules, threshold, &HashSet::new(), &mut report).await?;
    link.send(Vec::new(), Some(position), &mut report).await?;
    report.pages += 1;
    report.took.reconcile_ms = ms(reconciling);
    Ok((report, HashSet::new()))
}

/// What a reconciliation's read has found so far, by objectGUID (as a number).
#[derive(Default)]
struct Found {
    /// Every object read (containers may nest: each object is decided once).
    seen: HashSet<u128>,
    /// Those in the scope: what the cloud holds and is not among them has departed.
    in_scope: HashSet<u128>,
}

/// An objectGUID as a number (its 16 bytes as AD gives them), `None` when it is not 16 bytes.
fn guid_key(bytes: &[u8]) -> Option<u128> {
    <[u8; 16]>::try_from(bytes).ok().map(u128::from_le_bytes)
}

/// One page of a reconciliation's read: each object decided as an export decides it (the
/// DC asked the scope's group and filter questions per 100 users) and those in the scope sent,
/// but for `skip` (sent whole by this run already).
#[allow(clippy::too_many_arguments)]
async fn reconcile_page(
    ad: &Ad,
    link: &mut Link<'_>,
    rules: &mut Rules<'_>,
    threshold: &mut Threshold<'_>,
    skip: &HashSet<String>,
    report: &mut ExportReport,
    found: &mut Found,
    entries: Vec<ldap3::SearchEntry>,
) -> Result<(), String> {
    let (scope, mapping) = (rules.scope, rules.mapping);
    let mut read = Vec::with_capacity(entries.len());
    for e in entries {
        let mut o = object(&e);
        rules.privileged.mark(ad, &mut o).await?;
        let Some(key) = guid_key(&o.guid) else {
            continue;
        };
        if !found.seen.insert(key) {
            continue;
        }
        let guid = guid_string(&o.guid);
        // A group's whole membership, when the DC gave it whole (Windows answers a large one
        // in ranges: `member;range=0-1499`) and it fits one request.
        let ranged = e
            .attrs
            .keys()
            .any(|k| k.to_ascii_lowercase().starts_with("member;range="));
        let members = if o.is_group && !ranged && o.members.len() <= WHOLE_MEMBERS_MAX {
            Members::Whole(o.members.iter().map(|(g, _)| guid_string(g)).collect())
        } else {
            Members::Unknown
        };
        let values: BTreeMap<String, Vec<String>> = e.attrs.into_iter().collect();
        read.push((key, guid, o, values, members));
    }
    let mut in_groups = HashSet::new();
    let mut matches = HashSet::new();
    for chunk in read.chunks(100) {
        let terms: String = chunk
            .iter()
            .filter(|(_, _, o, _, _)| !o.is_group && !o.is_contact)
            .map(|(_, _, o, _, _)| guid_filter(&o.guid))
            .collect();
        if terms.is_empty() {
            continue;
        }
        ask_dc(ad, scope, &terms, &mut in_groups, &mut matches).await?;
    }
    let mut users = Vec::new();
    for (key, guid, o, values, members) in read {
        let (user, why) = if o.is_group {
            let (g, why) = plan_group(&guid, false, Some(&o), &values, members, scope, mapping);
            (Item::Group(g), why)
        } else if o.is_contact {
            let (c, why) = plan_contact(&guid, false, Some(&o), &values, scope, mapping);
            (Item::Contact(c), why)
        } else {
            let answers = dc_answers(scope, &guid, &in_groups, &matches);
            let (u, why) = plan_user(&guid, false, Some(&o), &values, answers, scope, mapping);
            (Item::User(u), why)
        };
        if let Some(why) = why {
            report.leave_out(&guid, Some(&o), scope, why);
        }
        if user.deleted() {
            continue;
        }
        report.read += 1;
        found.in_scope.insert(key);
        if !skip.contains(&guid) {
            users.push(user);
        }
    }
    let present: Vec<String> = users.iter().map(|u| u.guid().to_string()).collect();
    threshold.back(&present)?;
    link.send(users, None, report).await
}

/// The full reconciliation: every user in the scope's containers read page by page and
/// decided as an export decides, those not sent whole already (`skip`) sent (the cloud answers
/// `unchanged` for those it has as they are), then every live user the cloud holds from AD
/// that the read did not find in the scope is a departure, through the threshold. Nothing is
/// judged gone before the whole scope was read: a read cut short is an error, never a mass
/// suspension. The batches are `partial`: the cloud's cursor does not move.
pub async fn reconcile(
    ad: &Ad,
    link: &mut Link<'_>,
    rules: &mut Rules<'_>,
    threshold: &mut Threshold<'_>,
    skip: &HashSet<String>,
    report: &mut ExportReport,
) -> Result<(), String> {
    // `link.after` is where the export just left the cloud's cursor: not asked again.
    report.reconciled = true;
    let read_attrs = read_attributes(rules.mapping);
    // By objectGUID as a number: 16 bytes an object, not a string's 60 or so (50,000 users).
    let mut found = Found::default();
    for container in &rules.scope.containers {
        let base = container.to_comma_form();
        let read_err = |e: &dyn std::fmt::Display| format!("reading the scope {base}: {e}");
        let mut pages = ad
            .search_pages(&base, FILTER, &read_attrs)
            .await
            .map_err(|e| read_err(&e))?;
        // The next page is read from the DC while this one is decided and sent: one page
        // ahead, never more.
        let mut page = pages.next_page().await.map_err(|e| read_err(&e))?;
        while let Some(entries) = page {
            let (next, handled) = tokio::join!(
                pages.next_page(),
                reconcile_page(
                    ad, link, rules, threshold, skip, report, &mut found, entries
                )
            );
            handled?;
            page = next.map_err(|e| read_err(&e))?;
            crate::idle::release_heap();
        }
    }
    let in_scope = found.in_scope;
    // Every live user and group the cloud holds from AD, against what the whole read found.
    let mut gone = Vec::new();
    for what in ["users", "groups", "contacts"] {
        let mut after: Option<String> = None;
        loop {
            let (held, more) = if what == "groups" {
                link.client
                    .source_groups(link.credential, after.as_deref())
                    .await
                    .map(|p| (p.groups, p.more))
            } else if what == "contacts" {
                link.client
                    .source_contacts(link.credential, after.as_deref())
                    .await
                    .map(|p| (p.contacts, p.more))
            } else {
                link.client
                    .source_users(link.credential, after.as_deref())
                    .await
                    .map(|p| (p.users, p.more))
            }
            .map_err(|e| {
                format!(
                    "listing the {what} the cloud holds from AD: {e}; {}",
                    e.fix()
                )
            })?;
            let next = held
                .last()
                .and_then(|u| ad_sync_core::guid::normalize_guid_string(&u.guid));
            // Each page must start after the last: a cloud that hands back the same page (or
            // an earlier one) with `more` would otherwise keep the agent here for ever.
            if !list_moves_on(after.as_deref(), next.as_deref(), more) {
                return Err(format!(
                    "the cloud's list of the {what} it holds from AD did not move forward (a page after {} ended at {}); nothing was suspended. Report it to the cloud's operator",
                    after.as_deref().unwrap_or("the start"),
                    next.as_deref().unwrap_or_default()
                ));
            }
            after = next;
            gone.extend(not_in_scope(held, &in_scope));
            if !more || after.is_none() {
                break;
            }
        }
    }
    report.departed = gone.len();
    let leaving = threshold.settle(link, gone, report).await?;
    let users = leaving.iter().map(Departure::item).collect();
    link.send(users, None, report).await?;
    threshold.sent(&leaving)
}

/// Of what the cloud holds from AD, the live objects the full read did not find in the scope:
/// (objectGUID, no DN, why).
fn not_in_scope(held: Vec<SourceHeld>, in_scope: &HashSet<u128>) -> Vec<(String, String, String)> {
    let mut gone = Vec::new();
    {
        for u in held.into_iter().filter(|u| !u.deleted) {
            let Some(g) = ad_sync_core::guid::normalize_guid_string(&u.guid) else {
                continue;
            };
            let Some(key) = ad_sync_core::guid::parse_guid_string(&g).and_then(|b| guid_key(&b))
            else {
                continue;
            };
            if !in_scope.contains(&key) {
                gone.push((
                    g,
                    String::new(),
                    "not found in the scope by the full reconciliation (deleted in AD, moved out of the scope's containers, or no longer in its groups or filter)".to_string(),
                ));
            }
        }
    }
    gone
}

/// Whether a page of the cloud's list (`GET /v1/source/users`) that ended at `next`, read
/// after `after`, lets the reading go on: a page that says there is more must end past where
/// the last one did (objectGUID order).
fn list_moves_on(after: Option<&str>, next: Option<&str>, more: bool) -> bool {
    !more || next.is_none() || next > after
}

/// What one export is asked to do besides what the config says.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Replace the config's `[source] containers` for this run.
    pub containers: Vec<String>,
    /// Replace the config's `[source] named` for this run.
    pub named: Vec<String>,
    /// Run the full reconciliation now (`--resync`).
    pub resync: bool,
    /// Allow this many suspensions in this run, above the deletion threshold.
    pub allow: Option<usize>,
    /// The heartbeat that came just before it, in milliseconds (the report's `took`).
    pub heartbeat_ms: u64,
}

/// How often the full reconciliation runs by itself (besides the first sync, a lost or
/// another DC's cookie, a scope or mapping change, and `--resync`).
pub const RECONCILE_EVERY_SECONDS: i64 = 24 * 3600;

/// A fingerprint of the scope and the attribute map in force: a change of either makes the
/// next export reconcile (users newly in or out of the scope, fields newly mapped).
pub fn fingerprint(scope: &Scope, mapping: &Mapping) -> String {
    use sha2::{Digest, Sha256};
    let mut text = String::new();
    for c in &scope.containers {
        text.push_str(&format!("c:{}\n", c.to_comma_form().to_lowercase()));
    }
    for g in &scope.groups {
        text.push_str(&format!("g:{}\n", g.to_comma_form().to_lowercase()));
    }
    text.push_str(&format!(
        "f:{}\n",
        scope.filter.as_deref().unwrap_or_default()
    ));
    let mut named: Vec<String> = scope.named.iter().map(|n| n.to_lowercase()).collect();
    named.sort();
    text.push_str(&format!("n:{}\n", named.join(",")));
    for (row, attr) in mapping.rows(Kind::User).chain(mapping.rows(Kind::Group)) {
        text.push_str(&format!("m:{}={}\n", row.field, attr.unwrap_or("-")));
    }
    Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The file in the state folder that asks the agent for a full reconciliation at its next
/// export (`ad-sync-agent resync`, the wizard's review mode): the running service needs no
/// restart, and the request outlives a stopped service.
pub const RESYNC_REQUEST: &str = "resync.request";

/// Asks for a full reconciliation at the next export: writes the request (its time, in words)
/// into `state_dir`, whole or not at all.
pub fn request_resync(state_dir: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(state_dir)
        .map_err(|e| format!("the state folder {}: {e}", state_dir.display()))?;
    let mut f = tempfile::NamedTempFile::new_in(state_dir)
        .map_err(|e| format!("writing in the state folder {}: {e}", state_dir.display()))?;
    use std::io::Write as _;
    writeln!(
        f,
        "requested {}",
        ad_sync_core::time_fmt::unix_to_rfc3339(ad_sync_core::time_fmt::now_unix())
    )
    .map_err(|e| format!("writing the request: {e}"))?;
    f.persist(state_dir.join(RESYNC_REQUEST))
        .map_err(|e| format!("writing the request: {}", e.error))?;
    Ok(())
}

/// Whether a full reconciliation was requested (`request_resync`) in `state_dir`.
pub fn resync_requested(state_dir: &std::path::Path) -> bool {
    state_dir.join(RESYNC_REQUEST).is_file()
}

/// Whether the full reconciliation is due: asked for, after a full read (no cursor, or
/// another DC's), never done for this scope and map, or older than a day.
pub fn reconcile_due(
    asked: bool,
    full_read: bool,
    last: Option<&crate::state::Reconciled>,
    fingerprint: &str,
    now: i64,
) -> bool {
    asked
        || full_read
        || last
            .is_none_or(|l| l.fingerprint != fingerprint || now - l.at >= RECONCILE_EVERY_SECONDS)
}

/// The export the config describes (`[source]`, `[mapping]`, `[sync]`'s threshold), with
/// `opts`: connects to the DC, finds the service account (never exported), reads AD's changes
/// and sends them, then reconciles when it is due. What the service runs after each heartbeat
/// when `[sync] direction` has AD as a source.
pub async fn export_configured(
    agent: &crate::Agent,
    state: &mut State,
    opts: &ExportOptions,
) -> Result<ExportReport, String> {
    use ad_sync_core::dn::Dn;
    let mut scope = agent.answers.source_scope(None)?;
    if !opts.containers.is_empty() {
        scope.containers = opts
            .containers
            .iter()
            .map(|t| {
                Dn::parse(t).map(|p| p.dn).map_err(|e| {
                    format!("--container `{t}` is not a DN ({}); pick the container in ADUC and copy its distinguishedName", e.message)
                })
            })
            .collect::<Result<_, _>>()?;
    }
    if !opts.named.is_empty() {
        scope.named = opts.named.clone();
    }
    let mapping = Mapping::from_config(&agent.answers.mapping)?;
    let connecting = std::time::Instant::now();
    let ad = Ad::connect(&agent.answers, &agent.password)
        .await
        .map_err(|e| e.to_string())?;
    let connect_ms = ms(connecting);
    let r = async {
        let finding = std::time::Instant::now();
        let account = ad_sync_core::directory::bind::AccountName::parse(
            &agent.answers.service_account.username,
        )
        .map_err(|e| format!("[service_account] username {e}"))?;
        let me = ad
            .search_with(&account.search_filter(), &["objectGUID"])
            .await
            .map_err(|e| e.to_string())?;
        // Never exported: when it cannot be found, nothing is exported rather than risk it.
        scope.service_account = Some(me.first().map(|e| object(e).guid).ok_or_else(|| {
            format!(
                "[service_account] username `{}` is not found in AD, so the export cannot leave it out; correct the name (the one setup checked), or rerun ad-sync-setup",
                agent.answers.service_account.username
            )
        })?);
        scope.check()?;
        let account_ms = ms(finding);
        let dc = agent
            .answers
            .connect_options(Some(&ad.scope.dns_domain))
            .host;
        let mut link = Link {
            client: &agent.client,
            credential: &agent.credential,
            dc,
            after: None,
        };
        let print = fingerprint(&scope, &mapping);
        let last = state.last_reconcile();
        let state_dir = state.path.parent().map(std::path::Path::to_path_buf);
        let requested = state_dir.as_deref().is_some_and(resync_requested);
        let resync = opts.resync || requested;
        let mut threshold = Threshold {
            state: &mut *state,
            sync: &agent.answers.sync,
            allow: opts.allow,
        };
        let mut rules = Rules {
            scope: &scope,
            mapping: &mapping,
            privileged: Privileged::default(),
        };
        let forced_usn = agent
            .answers
            .source
            .as_ref()
            .is_some_and(|s| s.change_detection == ad_sync_core::answers::ChangeDetection::Usn);
        let (mut report, sent) =
            export(&ad, &mut link, &mut rules, &mut threshold, forced_usn).await?;
        report.took.heartbeat_ms = opts.heartbeat_ms;
        report.took.connect_ms = connect_ms;
        report.took.account_ms = account_ms;
        let now = ad_sync_core::time_fmt::now_unix();
        if report.full {
            // The cloud's cursor now stands past a full read: until a reconciliation finishes,
            // one is due at every export (a failed or interrupted one is not put off a day).
            threshold
                .state
                .record_reconcile(&crate::state::Reconciled {
                    at: 0,
                    fingerprint: String::new(),
                })
                .map_err(|e| e.to_string())?;
        }
        if reconcile_due(resync, report.full, last.as_ref(), &print, now) {
            if report.reconciled {
                // A full read is the reconciliation (it read the scope whole, and what the
                // cloud holds was compared with it): reading the scope again would only
                // double it.
            } else {
                let reconciling = std::time::Instant::now();
                reconcile(
                    &ad,
                    &mut link,
                    &mut rules,
                    &mut threshold,
                    &sent,
                    &mut report,
                )
                .await?;
                report.took.reconcile_ms = ms(reconciling);
            }
            state
                .record_reconcile(&crate::state::Reconciled {
                    at: now,
                    fingerprint: print,
                })
                .map_err(|e| e.to_string())?;
            // Done: the request (if any) is answered. One that cannot be removed is asked
            // again next time, which costs a read, never a missed one.
            if requested && let Some(d) = &state_dir {
                let _ = std::fs::remove_file(d.join(RESYNC_REQUEST));
            }
        }
        Ok(report)
    }
    .await;
    ad.close().await;
    r
}

fn count(report: &mut ExportReport, resp: &SourceResponse) {
    for i in &resp.items {
        match i.outcome {
            SourceOutcome::Created => report.created += 1,
            SourceOutcome::Updated => report.updated += 1,
            SourceOutcome::Unchanged => report.unchanged += 1,
            SourceOutcome::Suspended => report.suspended += 1,
            SourceOutcome::Restored => report.restored += 1,
            SourceOutcome::Refused => report.refused.push((i.guid.clone(), i.message.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which reader goes on from the cloud's cursor: a `usn1:` cursor is read on by
    /// uSNChanged (a fallback stays on it), a DirSync cookie by DirSync unless uSNChanged is
    /// forced (then a full read, as a cookie cannot be turned into a watermark); no cursor is
    /// a full read by whichever is asked for.

    #[test]
    fn what_the_cloud_holds_and_the_read_did_not_find_has_departed() {
        // Raw objectGUIDs as AD reads them; the cloud names them in AD's string form.
        let a: Vec<u8> = (1..=16).collect();
        let b: Vec<u8> = (17..=32).collect();
        let c: Vec<u8> = (33..=48).collect();
        let held = |g: &[u8], deleted: bool| SourceHeld {
            guid: ad_sync_core::guid::guid_string(g),
            id: String::new(),
            name: String::new(),
            deleted,
            group: false,
            contact: false,
        };
        let mut upper = held(&b, false);
        upper.guid = format!("{{{}}}", upper.guid.to_uppercase());
        let found: HashSet<u128> = [&a, &b].iter().filter_map(|g| guid_key(g)).collect();
        let gone = not_in_scope(
            vec![
                held(&a, false),
                // Found, in another spelling of the same GUID.
                upper,
                // Not found: departed.
                held(&c, false),
                // Not found, but already kept as deleted: nothing to send.
                held(&(49..=64).collect::<Vec<u8>>(), true),
                // Not a GUID: never taken for a departure.
                SourceHeld {
                    guid: "not-a-guid".into(),
                    ..held(&c, false)
                },
            ],
            &found,
        );
        let gone: Vec<&str> = gone.iter().map(|(g, _, _)| g.as_str()).collect();
        assert_eq!(gone, vec![ad_sync_core::guid::guid_string(&c).as_str()]);
        assert_eq!(guid_key(&a[..15]), None, "only 16 bytes are a GUID");
    }
    #[test]
    fn the_reader_goes_on_from_the_cursor_it_wrote() {
        let usn = usn::cookie(812);
        for (forced, cookie, reader, start) in [
            (false, None, Reader::Dirsync, None),
            (true, None, Reader::Usn, None),
            (false, Some("TVNEUwM="), Reader::Dirsync, Some("TVNEUwM=")),
            (true, Some("TVNEUwM="), Reader::Usn, None),
            (false, Some(usn.as_str()), Reader::Usn, Some(usn.as_str())),
            (true, Some(usn.as_str()), Reader::Usn, Some(usn.as_str())),
        ] {
            assert_eq!(
                choose_reader(forced, cookie),
                (reader, start.map(str::to_string)),
                "forced {forced}, cookie {cookie:?}"
            );
        }
    }
    use ad_sync_core::dn::Dn;

    fn dn(t: &str) -> Dn {
        Dn::parse(t)
            .map(|p| p.dn)
            .unwrap_or_else(|e| panic!("{t}: {e:?}"))
    }

    fn obj(sam: &str, dn_text: &str) -> Obj {
        Obj {
            guid: vec![1; 16],
            dn: dn_text.into(),
            parsed: Some(dn(dn_text)),
            sam: sam.into(),
            is_user: true,
            uac: 512,
            rid: Some(1105),
            ..Obj::default()
        }
    }

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
            .collect()
    }

    /// Groups as the agent reads them after DirSync named them (recorded shapes): inside the
    /// scope a whole record with its membership as read; the scope's groups and filter never
    /// leave a group out (they select users); built-in, protected and the cloud's own groups,
    /// and groups outside the containers, are gone.
    #[test]
    fn each_changed_group_becomes_a_whole_record_or_a_departure() {
        let scope = Scope {
            containers: vec![dn("OU=Staff,DC=example,DC=com")],
            groups: vec![dn("CN=Sync,OU=Staff,DC=example,DC=com")],
            filter: Some("(department=Sales)".into()),
            ..Scope::default()
        };
        let mapping = Mapping::default();
        let group = |sam: &str, dn_text: &str| Obj {
            is_user: false,
            is_group: true,
            security: true,
            uac: 0,
            ..obj(sam, dn_text)
        };
        let eng = group("Eng", "CN=Eng,OU=Staff,DC=example,DC=com");
        let v = values(&[("sAMAccountName", "Eng"), ("description", "Engineers")]);
        let g = "02020202-0202-0202-0202-020202020202";
        let m = |n: u8| format!("{n:02x}{n:02x}{n:02x}{n:02x}-0000-0000-0000-000000000000");
        let (out, why) = plan_group(
            g,
            false,
            Some(&eng),
            &v,
            Members::Changed {
                added: vec![m(1)],
                removed: vec![m(2)],
            },
            &scope,
            &mapping,
        );
        assert_eq!(why, None);
        assert!(!out.deleted);
        assert_eq!(out.fields["name"], "Eng");
        assert_eq!(out.fields["description"], "Engineers");
        assert_eq!(
            (out.added, out.removed, out.members),
            (vec![m(1)], vec![m(2)], None)
        );
        let (out, _) = plan_group(
            g,
            false,
            Some(&eng),
            &values(&[("sAMAccountName", "Eng")]),
            Members::Whole(vec![m(3)]),
            &scope,
            &mapping,
        );
        assert_eq!(out.members, Some(vec![m(3)]));
        assert_eq!(
            out.fields["description"], "",
            "a description cleared in AD is cleared"
        );
        let (out, _) = plan_group(g, false, Some(&eng), &v, Members::Unknown, &scope, &mapping);
        assert_eq!(
            out.members, None,
            "nothing said of the members: the cloud keeps them"
        );

        let admins = Obj {
            rid: Some(512),
            critical: true,
            protected: Some("it is Domain Admins".into()),
            ..group(
                "Domain Admins",
                "CN=Domain Admins,OU=Staff,DC=example,DC=com",
            )
        };
        let ops = Obj {
            protected: Some("it is protected (adminCount=1)".into()),
            ..group("Ops", "CN=Ops,OU=Staff,DC=example,DC=com")
        };
        let managed = Obj {
            marker: Some(format!(
                "{}g-123",
                ad_sync_core::directory::object::MARKER_PREFIX
            )),
            ..group("Cloudy", "CN=Cloudy,OU=Staff,DC=example,DC=com")
        };
        let outside = group("Far", "CN=Far,CN=Users,DC=example,DC=com");
        for (what, deleted, o, left_out) in [
            ("deleted in AD", true, Some(&eng), None),
            ("cannot be read", false, None, None),
            (
                "built-in",
                false,
                Some(&admins),
                Some("a built-in account or group"),
            ),
            (
                "protected",
                false,
                Some(&ops),
                Some("it is protected (adminCount=1); name it"),
            ),
            (
                "the cloud's own",
                false,
                Some(&managed),
                Some("it is the cloud group g-123's"),
            ),
            (
                "outside the containers",
                false,
                Some(&outside),
                Some("not in a scope container"),
            ),
        ] {
            let (out, why) = plan_group(
                g,
                deleted,
                o,
                &v,
                Members::Whole(vec![m(1)]),
                &scope,
                &mapping,
            );
            assert!(
                out.deleted && out.fields.is_empty() && out.members.is_none(),
                "{what}: {out:?}"
            );
            match left_out {
                None => assert_eq!(why, None, "{what}"),
                Some(w) => assert!(
                    why.as_deref().is_some_and(|y| y.starts_with(w)),
                    "{what}: {why:?}"
                ),
            }
        }
        // Named one by one, a protected group is sent.
        let named = Scope {
            named: vec!["ops".into()],
            ..scope.clone()
        };
        let (out, _) = plan_group(g, false, Some(&ops), &v, Members::Unknown, &named, &mapping);
        assert!(!out.deleted);
    }

    /// DirSync's member values (recorded shapes: incremental `range=1-1`/`range=0-0` values, or
    /// a whole list) become objectGUIDs; a DN nothing answered for is left out.
    #[test]
    fn a_groups_changed_members_become_guids() {
        let guids: HashMap<String, String> = [
            ("cn=ann,ou=staff,dc=example,dc=com", "a"),
            ("cn=bob,ou=staff,dc=example,dc=com", "b"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut d = Delta::default();
        assert_eq!(delta_members(&d, &guids), Members::Unknown);
        d.links.insert(
            "member".into(),
            dirsync::Link {
                added: vec!["CN=Ann,OU=Staff,DC=example,DC=com".into()],
                removed: vec![
                    "CN=Bob,OU=Staff,DC=example,DC=com".into(),
                    "CN=Gone\\0ADEL:x,CN=Deleted Objects,DC=example,DC=com".into(),
                ],
            },
        );
        assert_eq!(
            delta_members(&d, &guids),
            Members::Changed {
                added: vec!["a".into()],
                removed: vec!["b".into()],
            }
        );
        assert_eq!(delta_member_dns(&d).len(), 3);
        let mut whole = Delta::default();
        whole.values.insert(
            "member".into(),
            vec!["cn=BOB,ou=Staff,dc=example,dc=com".into()],
        );
        assert_eq!(
            delta_members(&whole, &guids),
            Members::Whole(vec!["b".into()])
        );
    }

    /// The default map with the title row switched off.
    fn no_title_map() -> Mapping {
        Mapping::from_config(&ad_sync_core::mapping::Config {
            user: [(
                "title".into(),
                ad_sync_core::mapping::Setting::Switch(false),
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Requests keep to the cloud's limits: at most 1,000 users and the body size, every
    /// user once and in order, whatever the records' sizes (measured: 1,000 users of the
    /// default map are about 400 KB, over the cloud's 256 KiB).
    #[test]
    fn batches_keep_to_the_clouds_count_and_body_size() {
        let user = |i: usize, len: usize| SourceUser {
            guid: format!("{i:08x}-0000-4000-8000-000000000000"),
            deleted: false,
            enabled: Some(true),
            fields: [
                ("username".to_string(), format!("u{i}")),
                ("title".to_string(), "t".repeat(len)),
            ]
            .into_iter()
            .collect(),
        };
        // A group sent with its whole membership, at the most members that is sent whole.
        let group = |i: usize, members: usize| SourceGroup {
            guid: format!("{i:08x}-1111-0000-0000-000000000000"),
            fields: [("name".to_string(), format!("g{i}"))]
                .into_iter()
                .collect(),
            members: Some(
                (0..members)
                    .map(|m| format!("{m:08x}-2222-0000-0000-000000000000"))
                    .collect(),
            ),
            ..SourceGroup::default()
        };
        for (what, users) in [
            (
                "small records: the count limits",
                (0..2500)
                    .map(|i| Item::User(user(i, 10)))
                    .collect::<Vec<_>>(),
            ),
            (
                "records of the default map's size",
                (0..2500).map(|i| Item::User(user(i, 300))).collect(),
            ),
            (
                "mixed",
                (0..3000)
                    .map(|i| Item::User(user(i, (i * 37) % 900)))
                    .collect(),
            ),
            ("one", vec![Item::User(user(1, 10))]),
            (
                "users and groups at the most members sent whole",
                (0..40)
                    .map(|i| {
                        if i % 4 == 0 {
                            Item::Group(group(i, WHOLE_MEMBERS_MAX))
                        } else {
                            Item::User(user(i, 300))
                        }
                    })
                    .collect(),
            ),
        ] {
            let ranges = parts(&users, PART_BYTES);
            let mut next = 0;
            for r in &ranges {
                assert_eq!(r.start, next, "{what}: in order, nothing skipped");
                next = r.end;
                assert!(r.len() <= MAX_SOURCE_ITEMS, "{what}: {} users", r.len());
                let req = SourceRequest {
                    after: Some("A".repeat(16 * 1024)),
                    cookie: "C".repeat(16 * 1024 - 4),
                    dc: "dc1.example.com".into(),
                    users: users[r.clone()]
                        .iter()
                        .filter_map(|i| match i {
                            Item::User(u) => Some(u.clone()),
                            _ => None,
                        })
                        .collect(),
                    groups: users[r.clone()]
                        .iter()
                        .filter_map(|i| match i {
                            Item::Group(g) => Some(g.clone()),
                            _ => None,
                        })
                        .collect(),
                    contacts: Vec::new(),
                    partial: true,
                };
                let body = serde_json::to_vec(&req).map_or(usize::MAX, |v| v.len());
                assert!(
                    body <= ad_sync_core::cloud::api::MAX_BODY_BYTES,
                    "{what}: a body of {body} bytes"
                );
            }
            assert_eq!(next, users.len(), "{what}: every user");
        }
        assert!(parts(&[], PART_BYTES).is_empty());
    }

    fn departures(n: usize) -> Vec<Departure> {
        (0..n)
            .map(|i| Departure {
                guid: format!("{i:08x}-0000-0000-0000-000000000000"),
                id: format!("u-{i}"),
                name: format!("user{i}"),
                dn: String::new(),
                why: "deleted in AD".into(),
                kind: Kind::User,
            })
            .collect()
    }

    /// The threshold for AD as a source, as for the other direction: within the budget
    /// everything goes; over it, every unapproved suspension is held and the approved ones
    /// go; `--allow-deletions` replaces the budget for the run.
    #[test]
    fn suspensions_over_the_threshold_are_held_and_approved_ones_go() {
        /// (what, departures, approved, spent, live, allow, sent, held, over the threshold)
        type Case<'a> = (
            &'a str,
            usize,
            &'a HashSet<String>,
            usize,
            usize,
            Option<usize>,
            usize,
            usize,
            bool,
        );
        // The defaults: 10 % of the users held from AD, at most 500, within 24 hours.
        let sync = ad_sync_core::answers::Sync::default();
        let approved_first: HashSet<String> = departures(1).into_iter().map(|d| d.guid).collect();
        let none = HashSet::new();
        // (departures, approved, spent, live, allow) -> (sent, held, over?)
        let cases: &[Case] = &[
            ("nothing leaves", 0, &none, 0, 1000, None, 0, 0, false),
            (
                "within 10 % of 1,000",
                100,
                &none,
                0,
                1000,
                None,
                100,
                0,
                false,
            ),
            ("one over", 101, &none, 0, 1000, None, 0, 101, true),
            (
                "spent earlier in the window counts",
                50,
                &none,
                60,
                1000,
                None,
                0,
                50,
                true,
            ),
            (
                "the approved one goes, the rest is held",
                200,
                &approved_first,
                0,
                1000,
                None,
                1,
                199,
                true,
            ),
            (
                "approved ones go even when over",
                1,
                &approved_first,
                1000,
                1000,
                None,
                1,
                0,
                false,
            ),
            (
                "a small directory: 10 % of 7 rounds up to 1",
                2,
                &none,
                0,
                7,
                None,
                0,
                2,
                true,
            ),
            (
                "--allow-deletions 300 for this run",
                300,
                &none,
                90,
                1000,
                Some(300),
                300,
                0,
                false,
            ),
            (
                "--allow-deletions 3 is a limit too",
                4,
                &none,
                0,
                1000,
                Some(3),
                0,
                4,
                true,
            ),
            (
                "everything in AD gone from a 50,000 directory",
                50_000,
                &none,
                0,
                50_000,
                None,
                0,
                50_000,
                true,
            ),
        ];
        for &(what, n, approved, spent, live, allow, sent, held, over) in cases {
            let (s, h, o) = budget_departures(departures(n), approved, spent, live, &sync, allow);
            assert_eq!(
                (s.len(), h.len(), o.is_some()),
                (sent, held, over),
                "{what}"
            );
            if let Some(o) = o {
                assert_eq!(o.managed, live, "{what}");
                assert_eq!(o.planned, held, "{what}");
            }
        }
        // The absolute limit: 500 even of a million.
        let (s, h, _) = budget_departures(departures(501), &none, 0, 1_000_000, &sync, None);
        assert_eq!((s.len(), h.len()), (0, 501));
    }

    /// A cloud that hands back the same page of its list, or an earlier one, with `more` set
    /// stops the reconciliation instead of holding it for ever.
    #[test]
    fn the_clouds_list_must_move_forward() {
        let a = "0a000000-0000-0000-0000-000000000000";
        let b = "0b000000-0000-0000-0000-000000000000";
        for (after, next, more, ok) in [
            (None, Some(a), true, true),
            (Some(a), Some(b), true, true),
            (Some(b), Some(b), true, false),
            (Some(b), Some(a), true, false),
            (Some(b), Some(a), false, true),
            (Some(b), None, true, true),
        ] {
            assert_eq!(
                list_moves_on(after, next, more),
                ok,
                "{after:?} -> {next:?} more {more}"
            );
        }
    }

    /// Sent suspensions leave the held list; only those nobody approved count against the
    /// budget.
    #[test]
    fn approved_suspensions_are_not_counted_against_the_budget() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut state = State::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let d = departures(2);
        let now = ad_sync_core::time_fmt::now_unix();
        let held: Vec<(String, crate::state::Held)> = d
            .iter()
            .map(|x| (x.guid.clone(), held_record(x, now)))
            .collect();
        state.hold_exports(&held).unwrap_or_else(|e| panic!("{e}"));
        state
            .approve(Some(&[d[0].id.clone()]), None)
            .unwrap_or_else(|e| panic!("{e}"));
        let sync = ad_sync_core::answers::Sync::default();
        let mut t = Threshold {
            state: &mut state,
            sync: &sync,
            allow: None,
        };
        t.sent(&d).unwrap_or_else(|e| panic!("{e}"));
        assert!(state.held_exports().unwrap_or_default().is_empty());
        assert_eq!(
            state.export_spent(now - 60).unwrap_or(9),
            1,
            "only the unapproved one"
        );
    }

    /// When the full reconciliation runs by itself.
    #[test]
    fn the_reconciliation_runs_when_it_is_due() {
        let now = 1_000_000;
        let last = crate::state::Reconciled {
            at: now - 3600,
            fingerprint: "abc".into(),
        };
        let old = crate::state::Reconciled {
            at: now - RECONCILE_EVERY_SECONDS,
            ..last.clone()
        };
        // What a full read leaves until its reconciliation finishes.
        let pending = crate::state::Reconciled {
            at: 0,
            fingerprint: String::new(),
        };
        for (what, asked, full, last, print, due) in [
            ("asked (--resync)", true, false, Some(&last), "abc", true),
            (
                "a full read (first, lost cookie, another DC)",
                false,
                true,
                Some(&last),
                "abc",
                true,
            ),
            ("never reconciled", false, false, None, "abc", true),
            (
                "the scope or the map changed",
                false,
                false,
                Some(&last),
                "xyz",
                true,
            ),
            ("a day old", false, false, Some(&old), "abc", true),
            (
                "an hour old, same scope",
                false,
                false,
                Some(&last),
                "abc",
                false,
            ),
            (
                "a full read whose reconciliation did not finish",
                false,
                false,
                Some(&pending),
                "abc",
                true,
            ),
        ] {
            assert_eq!(reconcile_due(asked, full, last, print, now), due, "{what}");
        }
    }

    /// The fingerprint changes with every part of the scope and the map, and not with how a
    /// DN is written.
    #[test]
    fn the_fingerprint_follows_the_scope_and_the_map() {
        let base = Scope {
            containers: vec![dn("OU=Staff,DC=example,DC=com")],
            ..Scope::default()
        };
        let m = Mapping::default();
        let f = fingerprint(&base, &m);
        let same = Scope {
            containers: vec![dn("ou=staff;dc=example;dc=com")],
            ..Scope::default()
        };
        assert_eq!(
            fingerprint(&same, &m),
            f,
            "the same container written otherwise"
        );
        let no_title = no_title_map();
        for (what, scope, map) in [
            (
                "another container",
                Scope {
                    containers: vec![dn("OU=Sales,DC=example,DC=com")],
                    ..base.clone()
                },
                &m,
            ),
            (
                "a group",
                Scope {
                    groups: vec![dn("CN=G,DC=example,DC=com")],
                    ..base.clone()
                },
                &m,
            ),
            (
                "a filter",
                Scope {
                    filter: Some("(l=Oslo)".into()),
                    ..base.clone()
                },
                &m,
            ),
            (
                "a named account",
                Scope {
                    named: vec!["adm".into()],
                    ..base.clone()
                },
                &m,
            ),
            ("a row switched off", base.clone(), &no_title),
        ] {
            assert_ne!(fingerprint(&scope, map), f, "{what}");
        }
    }

    /// The scope's groups and filter are the DC's answers; the decision follows them.
    #[test]
    fn the_dcs_answers_on_groups_and_filter_decide_the_scope() {
        let scope = Scope {
            containers: vec![dn("OU=Staff,DC=example,DC=com")],
            groups: vec![dn("CN=Cloud Users,OU=Groups,DC=example,DC=com")],
            filter: Some("(department=Sales)".into()),
            ..Scope::default()
        };
        let ann = obj("ann", "CN=Ann,OU=Staff,DC=example,DC=com");
        let v = values(&[("sAMAccountName", "ann")]);
        let g = "01010101-0101-0101-0101-010101010101";
        for (in_groups, matches_filter, out) in [
            (Some(true), Some(true), None),
            (
                Some(false),
                Some(true),
                Some("not a member of a scope group"),
            ),
            (
                Some(true),
                Some(false),
                Some("the scope's filter excludes it"),
            ),
        ] {
            let answers = DcAnswers {
                in_groups,
                matches_filter,
            };
            let (u, why) = plan_user(
                g,
                false,
                Some(&ann),
                &v,
                answers,
                &scope,
                &Mapping::default(),
            );
            assert_eq!(why.as_deref(), out, "{answers:?}");
            assert_eq!(u.deleted, out.is_some());
        }
    }

    /// The in-chain filter escapes what a group's DN may hold: parentheses, `*`, the
    /// backslash of an escaped comma.
    #[test]
    fn the_nested_group_filter_escapes_the_groups_dns() {
        let groups = [
            dn("CN=Sales (EU),OU=Groups,DC=example,DC=com"),
            dn(r"CN=Smith\, John's *team*,DC=example,DC=com"),
        ];
        let f = in_groups_filter("(objectGUID=\\01)", &groups);
        assert_eq!(
            f,
            r"(&(|(objectGUID=\01))(|(memberOf:1.2.840.113556.1.4.1941:=CN=Sales \28EU\29,OU=Groups,DC=example,DC=com)(memberOf:1.2.840.113556.1.4.1941:=CN=Smith\5c, John's \2ateam\2a,DC=example,DC=com)))"
        );
        assert!(ad_sync_core::source_scope::check_filter(&f).is_ok());
    }

    /// Users as the agent reads them by GUID after DirSync named them (recorded shapes).
    #[test]
    fn each_changed_user_becomes_a_whole_record_or_a_departure() {
        let scope = Scope {
            containers: vec![dn("OU=Staff,DC=example,DC=com")],
            ..Scope::default()
        };
        let mapping = Mapping::default();
        let ann = obj("ann", "CN=Ann,OU=Staff,DC=example,DC=com");
        let v = values(&[
            ("sAMAccountName", "ann"),
            ("givenName", "Ann"),
            ("sn", "Lee"),
            ("title", "Engineer"),
        ]);
        let g = "01010101-0101-0101-0101-010101010101";

        // Inside the scope: the whole record, every mapped field (empty when AD has none).
        let (u, why) = plan_user(
            g,
            false,
            Some(&ann),
            &v,
            DcAnswers::default(),
            &scope,
            &mapping,
        );
        assert_eq!(why, None);
        assert!(!u.deleted);
        assert_eq!(u.enabled, Some(true));
        assert_eq!(u.fields["username"], "ann");
        assert_eq!(u.fields["title"], "Engineer");
        assert_eq!(
            u.fields["email"], "",
            "a field AD has no value for is cleared"
        );
        assert_eq!(
            u.fields.len(),
            mapping.rows(Kind::User).count(),
            "every mapped field"
        );

        // Disabled in AD: sent as not enabled.
        let off = Obj {
            uac: 514,
            ..ann.clone()
        };
        let (u, _) = plan_user(
            g,
            false,
            Some(&off),
            &v,
            DcAnswers::default(),
            &scope,
            &mapping,
        );
        assert_eq!(u.enabled, Some(false));

        // A switched-off row is not sent at all.
        let no_title = no_title_map();
        let (u, _) = plan_user(
            g,
            false,
            Some(&ann),
            &v,
            DcAnswers::default(),
            &scope,
            &no_title,
        );
        assert!(!u.fields.contains_key("title"));

        // Deleted, unreadable now, moved out of the scope, or a rule's exception: gone.
        let moved = obj("ann", "CN=Ann,CN=Users,DC=example,DC=com");
        let computer = Obj {
            is_user: false,
            sam: "PC1$".into(),
            ..ann.clone()
        };
        let admin = Obj {
            protected: Some("it is protected (adminCount=1)".into()),
            ..ann.clone()
        };
        let managed = Obj {
            marker: Some("ad-sync:u-123".into()),
            ..ann.clone()
        };
        for (what, deleted, o, left_out) in [
            ("deleted", true, Some(&ann), None),
            ("unreadable", false, None, None),
            (
                "moved out",
                false,
                Some(&moved),
                Some("not in a scope container"),
            ),
            (
                "a computer",
                false,
                Some(&computer),
                Some("a computer or trust account"),
            ),
            (
                "protected",
                false,
                Some(&admin),
                Some("it is protected (adminCount=1); name it"),
            ),
            (
                "the cloud's own",
                false,
                Some(&managed),
                Some("it is the cloud user u-123's account"),
            ),
        ] {
            let (u, why) = plan_user(g, deleted, o, &v, DcAnswers::default(), &scope, &mapping);
            assert!(u.deleted && u.fields.is_empty(), "{what}: {u:?}");
            match left_out {
                None => assert_eq!(why, None, "{what}"),
                Some(w) => assert!(
                    why.as_deref().is_some_and(|y| y.starts_with(w)),
                    "{what}: {why:?}"
                ),
            }
        }
    }
}
