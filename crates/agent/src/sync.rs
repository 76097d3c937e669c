//! One sync run: from what the fold says must be looked at (`Work`) and what AD holds now, the
//! operations that bring AD to the mirror, under the policies; the safety rules; the deletion
//! threshold; then the operations, concurrently across objects and in order within each.
//!
//! Every operation is planned from AD's current state, so running the same work twice (after a
//! crash, an outage, a failover) does nothing the second time.

use super::ad::{
    self, Ad, AdError, GROUP_TYPE_GLOBAL_SECURITY, MARKER_PREFIX, Obj, UAC_DISABLED, UAC_NORMAL,
};
use super::mirror::{Mirror, ObjKey, Work};
use ad_sync_core::answers::{GroupDisconnection, MembershipSyncType, Sync, UserDisconnection};
use ad_sync_core::cloud::api::{ApplyStatus, ChangeResult, MemberType};
use ad_sync_core::dn::escape_rdn_value;
use ad_sync_core::secret::Secret;
use ldap3::Mod;
use std::collections::{BTreeSet, HashMap, HashSet};

pub struct Settings {
    pub policy: Sync,
    pub dry_run: bool,
    /// Overrides the threshold for one run (`--allow-deletions N`).
    pub allow_deletions: Option<usize>,
    pub concurrency: usize,
}

#[derive(Debug)]
pub enum RunError {
    /// AD or the cloud is away: nothing is committed; the same work is retried later.
    Unavailable(String),
    /// More deletions than the threshold allows: nothing was changed.
    Threshold {
        planned: usize,
        limit: usize,
        managed: usize,
    },
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Unavailable(m) => f.write_str(m),
            RunError::Threshold {
                planned,
                limit,
                managed,
            } => write!(
                f,
                "deletion threshold: this run would delete {planned} AD objects, more than the {limit} allowed (of {managed} managed); nothing was changed. If the deletions are intended, run `ad-sync-agent run --config FILE --once --allow-deletions {planned}` once, or raise [sync] deletion_threshold / deletion_threshold_percent"
            ),
        }
    }
}

/// How one object ended.
#[derive(Debug, Clone)]
enum Outcome {
    Done,
    Skipped(String),
    Failed(String),
}

/// One planned AD operation.
#[derive(Clone)]
enum Op {
    Add {
        dn: String,
        attrs: Vec<(String, HashSet<Vec<u8>>)>,
        what: String,
    },
    Rename {
        dn: String,
        rdn: String,
        what: String,
    },
    Modify {
        dn: String,
        mods: Vec<Mod<Vec<u8>>>,
        what: String,
    },
    Delete {
        dn: String,
        what: String,
    },
}

impl Op {
    fn what(&self) -> &str {
        match self {
            Op::Add { what, .. }
            | Op::Rename { what, .. }
            | Op::Modify { what, .. }
            | Op::Delete { what, .. } => what,
        }
    }
}

/// The operations for one object, in order, and the keys whose outcome they decide.
struct Job {
    keys: Vec<ObjKey>,
    ops: Vec<Op>,
    /// A password change in this job (its key fails alone if only the password is refused).
    password_key: Option<ObjKey>,
}

pub struct Report {
    pub results: Vec<ChangeResult>,
    pub operations: usize,
    pub failed: usize,
    pub skipped: usize,
    pub planned: Vec<String>,
}

fn set(v: impl Into<Vec<u8>>) -> HashSet<Vec<u8>> {
    HashSet::from([v.into()])
}

fn marker(id: &str) -> String {
    format!("{MARKER_PREFIX}{id}")
}

struct Found {
    objs: Vec<Obj>,
    by_guid: HashMap<Vec<u8>, usize>,
    by_marker: HashMap<String, usize>,
    by_sam: HashMap<String, usize>,
}

impl Found {
    fn new(objs: Vec<Obj>) -> Found {
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

    fn named(&self, sam: &str) -> Option<&Obj> {
        self.by_sam.get(&sam.to_lowercase()).map(|&i| &self.objs[i])
    }
}

/// Brings AD to the mirror for everything in `work`. `before` is the mirror before the fold
/// (for what was managed). Updates objectGUIDs in `mirror` for objects created or adopted.
pub async fn reconcile(
    ad: &Ad,
    mirror: &mut Mirror,
    before: &Mirror,
    work: &Work,
    private_key: Option<&Secret>,
    s: &Settings,
) -> Result<Report, RunError> {
    let unavailable = |e: AdError| RunError::Unavailable(e.to_string());
    let mut clock = std::time::Instant::now();
    let mut phase = |name: &str| {
        tracing::debug!(target: "ad_sync_agent::phase", "{name}: {:.2} s", clock.elapsed().as_secs_f64());
        clock = std::time::Instant::now();
    };
    let match_mode = s.policy.group_membership_sync_type == MembershipSyncType::Match;
    let mut outcomes: HashMap<ObjKey, Outcome> = HashMap::new();
    let mut planned = Vec::new();

    // Groups whose AD members change: those the fold touched and, in match mode, every group
    // that contains one of them (their users are direct members there too).
    let mut groups: BTreeSet<String> = work.groups.clone();
    if match_mode {
        for g in &work.groups {
            groups.extend(mirror.ancestors(g));
        }
    }

    // ---- look up everything this run is about ------------------------------------------------
    // Objects with a known objectGUID by that alone; the others (and any GUID AD no longer
    // has) by name, which finds the agent's own object (it carries the marker) or a collision.
    // Only indexed attributes are searched: a filter on adminDescription would make the DC scan
    // every object for every search.
    // (objectGUID if known, name) of every user and group this run brings to the mirror.
    let subjects: Vec<(Option<&Vec<u8>>, &str)> = work
        .users
        .iter()
        .filter_map(|id| mirror.users.get(id))
        .map(|u| (u.guid.as_ref(), u.user.username.as_str()))
        .chain(
            groups
                .iter()
                .filter_map(|id| mirror.groups.get(id))
                .map(|g| (g.guid.as_ref(), g.name.as_str())),
        )
        .collect();
    let by_name = |name: &str| ad::eq("sAMAccountName", name);
    let mut terms: Vec<String> = subjects
        .iter()
        .map(|(guid, name)| guid.map_or_else(|| by_name(name), |g| ad::guid_filter(g)))
        .collect();
    for guid in work
        .removed_users
        .iter()
        .filter_map(|u| u.guid.as_ref())
        .chain(work.removed_groups.iter().filter_map(|g| g.guid.as_ref()))
    {
        terms.push(ad::guid_filter(guid));
    }
    let sync_group_obj = match &ad.sync_group {
        Some(dn) if !groups.is_empty() => {
            ad.read(&dn.to_comma_form()).await.map_err(unavailable)?
        }
        _ => None,
    };
    let mut objs = if terms.is_empty() {
        Vec::new()
    } else {
        ad.find_any(terms).await.map_err(unavailable)?
    };
    phase("look up");
    let seen: HashSet<Vec<u8>> = objs.iter().map(|o| o.guid.clone()).collect();
    let again: Vec<String> = subjects
        .iter()
        .filter(|(guid, _)| guid.is_some_and(|g| !seen.contains(g)))
        .map(|(_, name)| by_name(name))
        .collect();
    if !again.is_empty() {
        for o in ad.find_any(again).await.map_err(unavailable)? {
            if !seen.contains(&o.guid) {
                objs.push(o);
            }
        }
    }
    let found = Found::new(objs);

    // ---- users ------------------------------------------------------------------------------
    let mut user_jobs = Vec::new();
    let mut created_users = Vec::new();
    let mut opened: HashMap<String, Result<Secret, String>> = HashMap::new();
    for (id, sealed) in &work.passwords {
        let r = match (sealed, private_key) {
            (Some(sealed), Some(key)) => ad_sync_core::cloud::sealed::open(key, sealed)
                .map_err(|e| format!("the password could not be opened with this agent's key: {e}")),
            (Some(_), None) => Err("this agent has no private key to open passwords with; re-run ad-sync-setup".into()),
            (None, _) => Err("the cloud sealed this password for other agents only (it was set before this agent enrolled); set it again in the cloud".into()),
        };
        opened.insert(id.clone(), r);
    }
    for id in &work.users {
        let Some(rec) = mirror.users.get(id).cloned() else {
            continue;
        };
        let u = &rec.user;
        let key = ObjKey::User(id.clone());
        let pw_key = ObjKey::Password(id.clone());
        let password = opened.get(id);
        // A password that cannot be used fails on its own; the account is still synced.
        let password = match password {
            Some(Ok(p)) if ad.encrypted => Some(p),
            Some(Ok(_)) => {
                let why = format!(
                    "password for {} refused: the connection to {} is plain LDAP, and passwords are only sent over an encrypted connection. Fix LDAPS or StartTLS ([ldap] security) and turn off allow_insecure_fallback, then set the password again in the cloud",
                    u.username, ad.host
                );
                tracing::error!("{why}");
                outcomes.insert(pw_key.clone(), Outcome::Failed(why));
                None
            }
            Some(Err(why)) => {
                let why = format!("password for {}: {why}", u.username);
                tracing::error!("{why}");
                outcomes.insert(pw_key.clone(), Outcome::Failed(why));
                None
            }
            None => None,
        };
        let display = format!("{} {}", u.given_name, u.surname);
        let upn = format!("{}@{}", u.username, ad.dns_domain);
        match found.managed(rec.guid.as_deref(), id) {
            Some(obj) => {
                if !ad.under_root(&obj.parsed) {
                    outcomes.insert(
                        key,
                        Outcome::Skipped(format!(
                            "{} was moved out of the Root User container ({}) to {}; the agent does not touch it there. Move it back to sync it",
                            u.username,
                            ad.root_text(),
                            obj.dn
                        )),
                    );
                    outcomes
                        .entry(pw_key)
                        .or_insert_with(|| Outcome::Skipped("the account is not synced".into()));
                    continue;
                }
                if let Some(why) = &obj.protected {
                    outcomes.insert(
                        key,
                        Outcome::Skipped(format!(
                            "{} ({}): {why}; the agent never changes it",
                            u.username, obj.dn
                        )),
                    );
                    outcomes
                        .entry(pw_key)
                        .or_insert_with(|| Outcome::Skipped("the account is protected".into()));
                    continue;
                }
                if rec.guid.as_deref() != Some(obj.guid.as_slice())
                    && let Some(r) = mirror.users.get_mut(id)
                {
                    r.guid = Some(obj.guid.clone());
                }
                let mut ops = Vec::new();
                let dn = rename_to(obj, &u.username, "", &mut ops);
                let mut mods = Vec::new();
                let mut changed = Vec::new();
                let mut text_attr = |attr: &str, have: Option<&str>, want: Option<&str>| {
                    if have != want {
                        changed.push(attr.to_string());
                        mods.push(match want {
                            Some(w) => Mod::Replace(attr.as_bytes().to_vec(), set(w)),
                            None => Mod::Replace(attr.as_bytes().to_vec(), HashSet::new()),
                        });
                    }
                };
                text_attr(
                    "sAMAccountName",
                    Some(obj.sam.as_str()),
                    Some(u.username.as_str()),
                );
                text_attr("userPrincipalName", obj.upn.as_deref(), Some(&upn));
                text_attr("givenName", obj.given.as_deref(), Some(&u.given_name));
                text_attr("sn", obj.sn.as_deref(), Some(&u.surname));
                text_attr("displayName", obj.display.as_deref(), Some(&display));
                text_attr("mail", obj.mail.as_deref(), u.email.as_deref());
                if obj.marker.as_deref() != Some(marker(id).as_str()) {
                    text_attr("adminDescription", obj.marker.as_deref(), Some(&marker(id)));
                }
                if !mods.is_empty() {
                    ops.push(Op::Modify {
                        dn: dn.clone(),
                        mods,
                        what: format!("update {} of {dn}", changed.join(", ")),
                    });
                }
                let mut has_password = rec.password_set;
                if let Some(p) = password {
                    ops.push(Op::Modify {
                        dn: dn.clone(),
                        mods: vec![Mod::Replace(
                            b"unicodePwd".to_vec(),
                            set(ad::unicode_pwd(p).to_vec()),
                        )],
                        what: format!("set the password of {dn}"),
                    });
                    has_password = true;
                }
                let disabled = obj.uac & UAC_DISABLED != 0;
                if u.suspended && !disabled {
                    ops.push(Op::Modify {
                        dn: dn.clone(),
                        mods: vec![Mod::Replace(
                            b"userAccountControl".to_vec(),
                            set((obj.uac | UAC_DISABLED).to_string()),
                        )],
                        what: format!("disable {dn} (suspended in the cloud)"),
                    });
                } else if !u.suspended && disabled {
                    if has_password {
                        ops.push(Op::Modify {
                            dn: dn.clone(),
                            mods: vec![Mod::Replace(
                                b"userAccountControl".to_vec(),
                                set((obj.uac & !UAC_DISABLED).to_string()),
                            )],
                            what: format!("enable {dn}"),
                        });
                    } else {
                        tracing::info!(
                            "{dn} stays disabled until its password is set in the cloud"
                        );
                    }
                }
                if work.unlock.contains(id) && obj.lockout_time > 0 {
                    ops.push(Op::Modify {
                        dn: dn.clone(),
                        mods: vec![Mod::Replace(b"lockoutTime".to_vec(), set("0"))],
                        what: format!("unlock {dn}"),
                    });
                }
                user_jobs.push(Job {
                    keys: vec![key],
                    ops,
                    password_key: password.map(|_| pw_key),
                });
            }
            None => {
                if let Some(other) = found.named(&u.username) {
                    let whose = match other.marker_id() {
                        Some(m) => format!("it is managed for another cloud user ({m})"),
                        None => "it is not managed by ad-sync".to_string(),
                    };
                    let why = format!(
                        "{} collides with the existing AD account {} ({whose}); it is not taken over. Rename or remove one of them",
                        u.username, other.dn
                    );
                    tracing::warn!("{why}");
                    outcomes.insert(key, Outcome::Failed(why));
                    outcomes.entry(pw_key).or_insert_with(|| {
                        Outcome::Skipped("the account is not synced (collision)".into())
                    });
                    continue;
                }
                let dn = format!("CN={},{}", escape_rdn_value(&u.username), ad.root_text());
                let mut attrs: Vec<(String, HashSet<Vec<u8>>)> = vec![
                    (
                        "objectClass".into(),
                        ["top", "person", "organizationalPerson", "user"]
                            .iter()
                            .map(|c| c.as_bytes().to_vec())
                            .collect(),
                    ),
                    ("sAMAccountName".into(), set(u.username.as_str())),
                    ("userPrincipalName".into(), set(upn.as_str())),
                    ("givenName".into(), set(u.given_name.as_str())),
                    ("sn".into(), set(u.surname.as_str())),
                    ("displayName".into(), set(display.as_str())),
                    ("adminDescription".into(), set(marker(id))),
                ];
                if let Some(m) = &u.email {
                    attrs.push(("mail".into(), set(m.as_str())));
                }
                let enabled = password.is_some() && !u.suspended;
                if let Some(p) = password {
                    attrs.push(("unicodePwd".into(), set(ad::unicode_pwd(p).to_vec())));
                }
                let uac = if enabled {
                    UAC_NORMAL
                } else {
                    UAC_NORMAL | UAC_DISABLED
                };
                attrs.push(("userAccountControl".into(), set(uac.to_string())));
                created_users.push(id.clone());
                user_jobs.push(Job {
                    keys: vec![key],
                    ops: vec![Op::Add {
                        dn: dn.clone(),
                        attrs,
                        what: format!(
                            "create user {dn}{}",
                            if password.is_some() {
                                " with its password"
                            } else {
                                " (disabled until a password is set)"
                            }
                        ),
                    }],
                    password_key: password.map(|_| pw_key),
                });
            }
        }
    }

    // ---- groups -------------------------------------------------------------------------------
    let mut group_jobs = Vec::new();
    let mut created_groups = Vec::new();
    let mut group_dns: HashMap<String, (String, Option<&Obj>)> = HashMap::new();
    let no_sync_group = ad.sync_group.is_none() || ad.group_parent().is_none();
    for id in &groups {
        let Some(g) = mirror.groups.get(id).cloned() else {
            continue;
        };
        let key = ObjKey::Group(id.clone());
        if no_sync_group {
            outcomes.insert(key, Outcome::Skipped("no sync group is configured ([directory] sync_group_dn), so groups are not synced; re-run ad-sync-setup to choose one".into()));
            continue;
        }
        let Some(sync_obj) = &sync_group_obj else {
            outcomes.insert(
                key,
                Outcome::Failed(format!(
                    "the sync group {} does not exist in AD; create it or re-run ad-sync-setup",
                    ad.sync_group
                        .as_ref()
                        .map(|d| d.to_comma_form())
                        .unwrap_or_default()
                )),
            );
            continue;
        };
        match found.managed(g.guid.as_deref(), id) {
            Some(obj) => {
                if !obj.is_group || !ad.in_group_parent(&obj.parsed) {
                    outcomes.insert(key, Outcome::Skipped(format!(
                        "group {} was moved to {}, out of the sync group's container; the agent does not touch it there",
                        g.name, obj.dn
                    )));
                    continue;
                }
                if let Some(why) = &obj.protected {
                    outcomes.insert(
                        key,
                        Outcome::Skipped(format!(
                            "group {} ({}): {why}; the agent never changes it",
                            g.name, obj.dn
                        )),
                    );
                    continue;
                }
                if let Some(r) = mirror.groups.get_mut(id) {
                    r.guid = Some(obj.guid.clone());
                }
                let mut ops = Vec::new();
                let dn = rename_to(obj, &g.name, "group ", &mut ops);
                if obj.sam != g.name {
                    ops.push(Op::Modify {
                        dn: dn.clone(),
                        mods: vec![Mod::Replace(
                            b"sAMAccountName".to_vec(),
                            set(g.name.as_str()),
                        )],
                        what: format!("update sAMAccountName of {dn}"),
                    });
                }
                if !obj.member_of.iter().any(|(guid, _)| *guid == sync_obj.guid) {
                    ops.push(Op::Modify {
                        dn: sync_obj.dn.clone(),
                        mods: vec![Mod::Add(b"member".to_vec(), set(dn.as_str()))],
                        what: format!("nest {dn} in the sync group"),
                    });
                }
                group_dns.insert(id.clone(), (dn, Some(obj)));
                group_jobs.push(Job {
                    keys: vec![key],
                    ops,
                    password_key: None,
                });
            }
            None => {
                if let Some(other) = found.named(&g.name) {
                    let why = format!(
                        "group {} collides with the existing AD object {} (not managed by ad-sync for this group); it is not taken over. Rename or remove one of them",
                        g.name, other.dn
                    );
                    tracing::warn!("{why}");
                    outcomes.insert(key, Outcome::Failed(why));
                    continue;
                }
                let parent = ad
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
                created_groups.push(id.clone());
                group_jobs.push(Job {
                    keys: vec![key],
                    // Nested in the sync group after all are created, in one operation.
                    ops: vec![Op::Add {
                        dn: dn.clone(),
                        attrs,
                        what: format!("create security group {dn}"),
                    }],
                    password_key: None,
                });
                group_dns.insert(id.clone(), (dn, None));
            }
        }
    }

    // ---- disconnections (planned now, so the threshold sees them before anything runs) -------
    let managed_group_guids: HashSet<Vec<u8>> = before
        .groups
        .values()
        .chain(mirror.groups.values())
        .filter_map(|g| g.guid.clone())
        .collect();
    let mut removal_jobs = Vec::new();
    let mut deletions = 0usize;
    for rec in &work.removed_users {
        let key = ObjKey::User(rec.user.id.clone());
        let Some(obj) = found.managed(rec.guid.as_deref(), &rec.user.id) else {
            continue; // Already gone from AD.
        };
        if !ad.under_root(&obj.parsed) || obj.protected.is_some() {
            outcomes.insert(
                key,
                Outcome::Skipped(format!(
                    "{} is outside the Root User container or protected; left as it is",
                    obj.dn
                )),
            );
            continue;
        }
        let mut ops = Vec::new();
        if s.policy.membership_disconnection_action == GroupDisconnection::Remove {
            for (g, gdn) in &obj.member_of {
                if managed_group_guids.contains(g) {
                    ops.push(Op::Modify {
                        dn: gdn.clone(),
                        mods: vec![Mod::Delete(b"member".to_vec(), set(obj.dn.as_str()))],
                        what: format!(
                            "remove {} from {gdn} (membership disconnection: remove)",
                            obj.dn
                        ),
                    });
                }
            }
        }
        match s.policy.user_disconnection_action {
            UserDisconnection::Remove => {
                deletions += 1;
                ops.push(Op::Delete {
                    dn: obj.dn.clone(),
                    what: format!("delete user {} (user disconnection: remove)", obj.dn),
                });
            }
            UserDisconnection::Disable => ops.push(Op::Modify {
                dn: obj.dn.clone(),
                mods: vec![
                    Mod::Replace(
                        b"userAccountControl".to_vec(),
                        set((obj.uac | UAC_DISABLED).to_string()),
                    ),
                    unmark(),
                ],
                what: format!(
                    "disable {} and stop managing it (user disconnection: disable)",
                    obj.dn
                ),
            }),
            UserDisconnection::Retain => ops.push(Op::Modify {
                dn: obj.dn.clone(),
                mods: vec![unmark()],
                what: format!(
                    "keep {} as it is and stop managing it (user disconnection: retain)",
                    obj.dn
                ),
            }),
        }
        removal_jobs.push(Job {
            keys: vec![key],
            ops,
            password_key: None,
        });
    }
    for rec in &work.removed_groups {
        let key = ObjKey::Group(rec.id.clone());
        let Some(obj) = found.managed(rec.guid.as_deref(), &rec.id) else {
            continue;
        };
        if obj.protected.is_some() || !ad.in_group_parent(&obj.parsed) {
            outcomes.insert(
                key,
                Outcome::Skipped(format!(
                    "{} is outside the sync group's container or protected; left as it is",
                    obj.dn
                )),
            );
            continue;
        }
        let op = match s.policy.group_disconnection_action {
            GroupDisconnection::Remove => {
                deletions += 1;
                Op::Delete {
                    dn: obj.dn.clone(),
                    what: format!("delete group {} (group disconnection: remove)", obj.dn),
                }
            }
            GroupDisconnection::Retain => Op::Modify {
                dn: obj.dn.clone(),
                mods: vec![unmark()],
                what: format!(
                    "keep group {} and stop managing it (group disconnection: retain)",
                    obj.dn
                ),
            },
        };
        removal_jobs.push(Job {
            keys: vec![key],
            ops: vec![op],
            password_key: None,
        });
    }
    let managed = before.users.values().filter(|u| u.guid.is_some()).count()
        + before.groups.values().filter(|g| g.guid.is_some()).count();
    let limit = s.allow_deletions.unwrap_or_else(|| {
        let pct = (managed * s.policy.deletion_threshold_percent as usize).div_ceil(100);
        pct.min(s.policy.deletion_threshold as usize)
    });
    if deletions > limit {
        return Err(RunError::Threshold {
            planned: deletions,
            limit,
            managed,
        });
    }

    // ---- run: users, then groups, then memberships, then disconnections -----------------------
    let mut ops_done = 0;
    phase("plan");
    ops_done += run_jobs(ad, user_jobs, s, &mut outcomes, &mut planned).await?;
    phase("users");
    if !s.dry_run && !created_users.is_empty() {
        learn_guids(ad, mirror, &created_users, true)
            .await
            .map_err(unavailable)?;
    }
    // AD has the password once this run set it; one sealed only for the agents of the time
    // (`None`) was set by them.
    for (id, sealed) in &work.passwords {
        let set_here = matches!(
            outcomes.get(&ObjKey::Password(id.clone())),
            Some(Outcome::Done)
        );
        if (set_here || sealed.is_none())
            && let Some(r) = mirror.users.get_mut(id)
        {
            r.password_set = true;
        }
    }
    phase("users' objectGUIDs");
    ops_done += run_jobs(ad, group_jobs, s, &mut outcomes, &mut planned).await?;
    phase("groups");
    // The new groups go into the sync group together (one modify per 500).
    if let Some(sync_obj) = &sync_group_obj {
        let new: Vec<(&String, &String)> = created_groups
            .iter()
            .filter(|id| {
                s.dry_run
                    || matches!(
                        outcomes.get(&ObjKey::Group((*id).clone())),
                        Some(Outcome::Done)
                    )
            })
            .filter_map(|id| group_dns.get(id).map(|(dn, _)| (id, dn)))
            .collect();
        let jobs = new
            .chunks(500)
            .map(|chunk| Job {
                keys: chunk
                    .iter()
                    .map(|(id, _)| ObjKey::Group((*id).clone()))
                    .collect(),
                ops: vec![Op::Modify {
                    dn: sync_obj.dn.clone(),
                    mods: vec![Mod::Add(
                        b"member".to_vec(),
                        chunk.iter().map(|(_, dn)| dn.as_bytes().to_vec()).collect(),
                    )],
                    what: format!(
                        "nest {} new group(s) in the sync group {}",
                        chunk.len(),
                        sync_obj.dn
                    ),
                }],
                password_key: None,
            })
            .collect();
        ops_done += run_jobs(ad, jobs, s, &mut outcomes, &mut planned).await?;
    }
    if !s.dry_run && !created_groups.is_empty() {
        learn_guids(ad, mirror, &created_groups, false)
            .await
            .map_err(unavailable)?;
    }

    let managed_guids: HashSet<Vec<u8>> = mirror
        .users
        .values()
        .filter_map(|u| u.guid.clone())
        .chain(mirror.groups.values().filter_map(|g| g.guid.clone()))
        .collect();
    let mut member_jobs = Vec::new();
    for id in &groups {
        let key = ObjKey::Group(id.clone());
        if matches!(
            outcomes.get(&key),
            Some(Outcome::Failed(_) | Outcome::Skipped(_))
        ) {
            continue;
        }
        let Some((dn, obj)) = group_dns.get(id) else {
            continue;
        };
        let have: HashSet<&Vec<u8>> = obj
            .map(|o| {
                o.members
                    .iter()
                    .map(|(g, _)| g)
                    .filter(|g| managed_guids.contains(*g))
                    .collect()
            })
            .unwrap_or_default();
        let want: HashSet<Vec<u8>> = mirror
            .desired_members(id, match_mode)
            .into_iter()
            .filter_map(|(t, m)| match t {
                MemberType::User => mirror.users.get(&m).and_then(|u| u.guid.clone()),
                MemberType::Group => mirror.groups.get(&m).and_then(|g| g.guid.clone()),
            })
            .collect();
        let add: HashSet<Vec<u8>> = want
            .iter()
            .filter(|g| !have.contains(g))
            .map(|g| format!("<GUID={}>", ad::guid_string(g)).into_bytes())
            .collect();
        let del: HashSet<Vec<u8>> = obj
            .map(|o| {
                o.members
                    .iter()
                    .filter(|(g, _)| managed_guids.contains(g) && !want.contains(g))
                    // By objectGUID: a member renamed earlier in this run has a new DN.
                    .map(|(g, _)| format!("<GUID={}>", ad::guid_string(g)).into_bytes())
                    .collect()
            })
            .unwrap_or_default();
        if add.is_empty() && del.is_empty() {
            continue;
        }
        let what = format!(
            "members of {dn}: {} added, {} removed",
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
        member_jobs.push(Job {
            keys: vec![key],
            ops: vec![Op::Modify {
                dn: dn.clone(),
                mods,
                what,
            }],
            password_key: None,
        });
    }
    phase("nesting, groups' objectGUIDs");
    ops_done += run_jobs(ad, member_jobs, s, &mut outcomes, &mut planned).await?;
    phase("memberships");
    ops_done += run_jobs(ad, removal_jobs, s, &mut outcomes, &mut planned).await?;
    phase("disconnections");

    // ---- results per change ------------------------------------------------------------------
    let mut by_seq: HashMap<i64, Vec<&ObjKey>> = HashMap::new();
    for (k, seqs) in &work.seqs {
        for s in seqs {
            by_seq.entry(*s).or_default().push(k);
        }
    }
    let skipped: HashMap<i64, &String> = work.skipped.iter().map(|(s, m)| (*s, m)).collect();
    let mut results = Vec::new();
    let (mut failed, mut skipped_n) = (0, 0);
    for seq in &work.all_seqs {
        let (status, message) = if let Some(m) = skipped.get(seq) {
            (ApplyStatus::Skipped, (*m).clone())
        } else {
            let mut st = (ApplyStatus::Applied, String::new());
            for k in by_seq.get(seq).into_iter().flatten() {
                match outcomes.get(*k) {
                    Some(Outcome::Failed(m)) => st = (ApplyStatus::Failed, m.clone()),
                    Some(Outcome::Skipped(m)) if st.0 == ApplyStatus::Applied => {
                        st = (ApplyStatus::Skipped, m.clone())
                    }
                    _ => {}
                }
            }
            st
        };
        match status {
            ApplyStatus::Failed => failed += 1,
            ApplyStatus::Skipped => skipped_n += 1,
            ApplyStatus::Applied => {}
        }
        results.push(ChangeResult {
            seq: *seq,
            status,
            message,
        });
    }
    Ok(Report {
        results,
        operations: ops_done,
        failed,
        skipped: skipped_n,
        planned,
    })
}

/// A job, how many of its operations were done, and the failure that stopped it (with whether
/// the failed operation was the password).
type JobEnd = (Job, usize, Result<(), (AdError, bool)>);

/// Runs jobs concurrently (each job's operations in order). A refusal fails that job's object
/// and skips the rest of its operations; the DC going away stops the run.
async fn run_jobs(
    ad: &Ad,
    jobs: Vec<Job>,
    s: &Settings,
    outcomes: &mut HashMap<ObjKey, Outcome>,
    planned: &mut Vec<String>,
) -> Result<usize, RunError> {
    use futures_util::StreamExt;
    if s.dry_run {
        for j in &jobs {
            for op in &j.ops {
                tracing::info!("dry run: would {}", op.what());
                planned.push(op.what().to_string());
            }
        }
        return Ok(0);
    }
    let results: Vec<JobEnd> = futures_util::stream::iter(jobs)
        .map(|job| async move {
            let mut done = 0;
            for op in &job.ops {
                let r = match op {
                    Op::Add { dn, attrs, .. } => ad.add(dn, attrs.clone()).await,
                    Op::Rename { dn, rdn, .. } => ad.rename(dn, rdn).await,
                    Op::Modify { dn, mods, what } => ad.modify(dn, mods.clone(), what).await,
                    Op::Delete { dn, .. } => ad.delete(dn).await,
                };
                match r {
                    Ok(()) => {
                        tracing::info!("{}", op.what());
                        done += 1;
                    }
                    // Already as wanted: a member already there or already gone.
                    Err(e)
                        if matches!(op, Op::Modify { .. })
                            && matches!(e.rc(), Some(20 | 16))
                            && op.what().starts_with("members of") =>
                    {
                        tracing::debug!("{}: already so ({e})", op.what());
                    }
                    Err(e) => {
                        let pw = op.what().starts_with("set the password");
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

/// Removes the agent's marker: the object is no longer managed.
fn unmark() -> Mod<Vec<u8>> {
    Mod::Replace(b"adminDescription".to_vec(), HashSet::new())
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
    ops.push(Op::Rename {
        dn: obj.dn.clone(),
        rdn: rdn.clone(),
        what: format!("rename {kind}{} to {rdn}", obj.dn),
    });
    format!("{rdn},{parent}")
}

/// Reads the objectGUIDs of objects just created (by name; the marker says whose they are).
async fn learn_guids(
    ad: &Ad,
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
    for o in ad.find_any(terms).await? {
        let Some(id) = o.marker_id() else { continue };
        if users {
            if let Some(u) = mirror.users.get_mut(id) {
                u.guid = Some(o.guid.clone());
            }
        } else if let Some(g) = mirror.groups.get_mut(id) {
            g.guid = Some(o.guid.clone());
        }
    }
    Ok(())
}
