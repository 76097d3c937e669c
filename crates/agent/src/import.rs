//! `ad-sync-agent import`: AD into the cloud, once. Reads the users and security groups under
//! the Root User container (or only the members of one group, nested included) and creates
//! them in the cloud, each linked to its objectGUID, so that the agent then manages exactly
//! those AD objects: the cloud's next changes name them by link, and the planner takes them
//! over under the same safety rules as any adoption.
//!
//! `select` is pure (table tests on the recorded directory); `run` reads AD, sends the cloud
//! requests of at most `MAX_IMPORT_ITEMS` (and ~200 KB) and rolls the answers up. The cloud
//! answers an object imported before as `already`, so a re-run, or a run after a crash
//! mid-import, imports only what is new.

use crate::ad::{self, Obj};
use crate::plan::Scope;
use ad_sync_core::adopt::{Kind, Link, Refusal, Rules};
use ad_sync_core::cloud::api::{
    ImportGroup, ImportItem, ImportMembership, ImportOutcome, ImportRequest, ImportUser,
    MAX_IMPORT_ITEMS,
};
use ad_sync_core::directory::object;
use ad_sync_core::tier0::Tier0;
use futures_util::StreamExt;
use serde::Serialize;
use std::collections::HashSet;

pub use ad_sync_core::import_report::{Report, ReportItem};

/// A request body stays under this size (the cloud takes 256 KB).
const MAX_REQUEST_BYTES: usize = 200 * 1024;

/// What `select` found to import, and what it will not import and why.
#[derive(Debug, Default)]
pub struct Selection {
    pub users: Vec<ImportUser>,
    pub groups: Vec<ImportGroup>,
    pub memberships: Vec<ImportMembership>,
    /// Not sent: protected, privileged, distribution groups, the sync group, objects already
    /// managed for a cloud object.
    pub skipped: Vec<ReportItem>,
}

/// Chooses what to import from the AD objects read: every user account and security group the
/// adoption rules would let the agent manage (import stands for the adopt settings, never for
/// the safety rules), and the memberships among them.
pub fn select(
    objs: &[Obj],
    scope: &Scope,
    sync_group_guid: Option<&[u8]>,
    tier0: &Tier0,
) -> Selection {
    let rules = Rules {
        scope,
        sync_group_guid,
        tier0,
        adopt_users: true,
        adopt_groups: true,
    };
    let mut s = Selection::default();
    let mut imported: HashSet<&[u8]> = HashSet::new();
    let mut groups = Vec::new();
    for o in objs {
        let kind = if o.is_group { Kind::Group } else { Kind::User };
        let what = if o.is_group { "group" } else { "user" };
        if !o.is_group && !o.is_user {
            continue; // Computers, contacts: not people.
        }
        if let Err(r) = rules.check(kind, o, "", Link::Imported) {
            let message = match &r {
                Refusal::ManagedForOther(id) => {
                    format!("already managed by ad-sync for the cloud object {id}")
                }
                other => other.words(kind, scope),
            };
            s.skipped.push(ReportItem {
                kind: what.into(),
                name: o.sam.clone(),
                guid: ad::guid_string(&o.guid),
                outcome: if matches!(r, Refusal::ManagedForOther(_)) {
                    "already".into()
                } else {
                    "skipped".into()
                },
                message,
            });
            continue;
        }
        imported.insert(&o.guid);
        if o.is_group {
            s.groups.push(ImportGroup {
                guid: ad::guid_string(&o.guid),
                name: o.sam.clone(),
            });
            groups.push(o);
        } else {
            s.users.push(ImportUser {
                guid: ad::guid_string(&o.guid),
                username: o.sam.clone(),
                given_name: o.given.clone().unwrap_or_default(),
                surname: o.sn.clone().unwrap_or_default(),
                display_name: o.display.clone(),
                email: o.mail.clone(),
                enabled: o.enabled(),
            });
        }
    }
    // From each member's memberOf, not the group's `member`: AD returns a group's members in
    // ranges of 1,500 (`member;range=...`), an object's groups whole.
    let group_guids: HashSet<&[u8]> = groups.iter().map(|g| g.guid.as_slice()).collect();
    for o in objs.iter().filter(|o| imported.contains(o.guid.as_slice())) {
        for (g, _) in &o.member_of {
            if group_guids.contains(g.as_slice()) {
                s.memberships.push(ImportMembership {
                    group_guid: ad::guid_string(g),
                    member_guid: ad::guid_string(&o.guid),
                });
            }
        }
    }
    s
}

/// Splits the selection into requests: users, then groups, then memberships (so each
/// membership's objects were linked by an earlier request), each within the cloud's limits.
pub fn requests(s: &Selection, dry_run: bool) -> Vec<ImportRequest> {
    let mut out = Vec::new();
    batches(&s.users, dry_run, &mut out, |r, u| r.users.push(u.clone()));
    batches(&s.groups, dry_run, &mut out, |r, g| {
        r.groups.push(g.clone())
    });
    batches(&s.memberships, dry_run, &mut out, |r, m| {
        r.memberships.push(m.clone())
    });
    out
}

/// Packs `items` into requests of at most `MAX_IMPORT_ITEMS` and ~`MAX_REQUEST_BYTES`.
fn batches<T: Serialize>(
    items: &[T],
    dry_run: bool,
    out: &mut Vec<ImportRequest>,
    push: impl Fn(&mut ImportRequest, &T),
) {
    let empty = || ImportRequest {
        dry_run,
        ..ImportRequest::default()
    };
    let mut cur = empty();
    let mut bytes = 0;
    for item in items {
        let n = size(item);
        if !cur.is_empty() && (cur.len() == MAX_IMPORT_ITEMS || bytes + n > MAX_REQUEST_BYTES) {
            out.push(std::mem::replace(&mut cur, empty()));
            bytes = 0;
        }
        bytes += n;
        push(&mut cur, item);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
}

/// The JSON size of one item: what it adds to a request body.
fn size<T: Serialize>(v: &T) -> usize {
    serde_json::to_vec(v).map_or(1024, |v| v.len() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::{dn, recorded};

    fn scope(root: &str, sync_group: &str) -> Scope {
        Scope {
            root: dn(root),
            sync_group: Some(dn(sync_group)),
            dns_domain: "example.com".into(),
            host: "dc1.example.com".into(),
            encrypted: true,
        }
    }

    #[test]
    fn import_takes_people_and_security_groups_and_never_protected_ones() {
        let mut objs = recorded();
        // The whole domain as the Root User container: every safety rule has to hold alone.
        let scope = scope(
            "DC=example,DC=com",
            "CN=Cloud Groups,OU=Staff,DC=example,DC=com",
        );
        let sync = objs
            .iter()
            .find(|o| o.sam == "Cloud Groups")
            .map(|o| o.guid.clone());
        // Engineering as an administrator made it: no marker.
        for o in objs.iter_mut().filter(|o| o.sam == "Engineering") {
            o.marker = None;
        }
        let nested = Tier0::of(objs.iter().filter(|o| o.sam == "svc-nested").map(|o| {
            (
                o.guid.clone(),
                "it is a member of a privileged group (IT-Admins, in Domain Admins)".to_string(),
            )
        }));
        let s = select(&objs, &scope, sync.as_deref(), &nested);
        let users: Vec<&str> = s.users.iter().map(|u| u.username.as_str()).collect();
        let groups: Vec<&str> = s.groups.iter().map(|g| g.name.as_str()).collect();
        let mut skipped: Vec<String> = s
            .skipped
            .iter()
            .map(|i| {
                format!(
                    "{} {}: {}",
                    i.name,
                    i.outcome,
                    &i.message[..i.message.len().min(40)]
                )
            })
            .collect();
        skipped.sort();
        let mut sorted = users.clone();
        sorted.sort();
        assert_eq!(sorted, vec!["bob", "svc-locked", "svc-sync"]);
        for never in [
            "Administrator",
            "krbtgt",
            "svc-admin",
            "svc-protected",
            "svc-nested",
            "alice",
            "carol",
        ] {
            assert!(
                !users.contains(&never),
                "{never} must not be imported: {users:?}"
            );
        }
        assert_eq!(groups, vec!["Engineering"]);
        let bob = s
            .users
            .iter()
            .find(|u| u.username == "bob")
            .unwrap_or_else(|| panic!());
        assert_eq!(
            (bob.given_name.as_str(), bob.surname.as_str(), bob.enabled),
            ("Bob", "Baker", false)
        );
        for (name, outcome, why) in [
            ("Mailing List", "skipped", "it is a distribution group"),
            ("Cloud Groups", "skipped", "it is the sync group itself"),
            (
                "svc-nested",
                "skipped",
                "it is privileged: it is a member of a privileged group",
            ),
            ("Domain Admins", "skipped", "it is protected (adminCount=1"),
            (
                "alice",
                "already",
                "already managed by ad-sync for the cloud",
            ),
        ] {
            let hit = s
                .skipped
                .iter()
                .find(|i| i.name == name)
                .unwrap_or_else(|| panic!("{name} not reported: {skipped:?}"));
            assert_eq!(hit.outcome, outcome, "{name}");
            assert!(hit.message.starts_with(why), "{name}: {}", hit.message);
        }
        // Engineering's members that are imported: bob (alice is managed already).
        let bob_guid = bob.guid.clone();
        assert_eq!(
            s.memberships
                .iter()
                .map(|m| m.member_guid.as_str())
                .collect::<Vec<_>>(),
            vec![bob_guid.as_str()]
        );
    }

    #[test]
    fn a_dry_run_sends_no_objectguid_of_ad() {
        let g = |n: u8| object::guid_string(&[n; 16]);
        let mut s = Selection::default();
        for (n, name) in [(1u8, "ivy"), (2, "ike")] {
            s.users.push(ImportUser {
                guid: g(n),
                username: name.into(),
                given_name: "G".into(),
                surname: "S".into(),
                email: None,
                display_name: None,
                enabled: true,
            });
        }
        s.groups.push(ImportGroup {
            guid: g(3),
            name: "Team".into(),
        });
        s.memberships.push(ImportMembership {
            group_guid: g(3),
            member_guid: g(2),
        });
        let mine = HashSet::from([vec![1u8; 16]]);
        let mut n = 200u8;
        let mut fresh = || {
            n += 1;
            Ok::<_, ()>(object::guid_string(&[n; 16]))
        };
        let (sent, already, map) =
            stand_in(s, &mine, &mut fresh).unwrap_or_else(|()| panic!("fresh"));
        assert_eq!(already.len(), 1);
        assert_eq!(
            (already[0].name.as_str(), already[0].outcome.as_str()),
            ("ivy", "already")
        );
        let body = serde_json::to_string(&requests(&sent, true)).unwrap_or_default();
        for real in 1..=3 {
            assert!(!body.contains(&g(real)), "{body}");
        }
        assert_eq!(sent.users.len(), 1);
        assert_eq!(map.get(&sent.users[0].guid), Some(&g(2)));
        assert_eq!(sent.memberships[0].member_guid, sent.users[0].guid);
        assert_eq!(sent.memberships[0].group_guid, sent.groups[0].guid);
    }

    #[test]
    fn requests_keep_to_the_clouds_limits_and_send_users_before_groups_before_memberships() {
        let mut s = Selection::default();
        for i in 0..1203 {
            s.users.push(ImportUser {
                guid: format!("{i:08x}-0000-0000-0000-000000000000"),
                username: format!("u{i}"),
                given_name: "G".into(),
                surname: "S".repeat(60),
                display_name: Some("D".repeat(250)),
                email: None,
                enabled: true,
            });
        }
        s.groups.push(ImportGroup {
            guid: "g".into(),
            name: "G".into(),
        });
        s.memberships.push(ImportMembership {
            group_guid: "g".into(),
            member_guid: "m".into(),
        });
        let r = requests(&s, false);
        assert!(r.iter().all(|q| q.len() <= MAX_IMPORT_ITEMS));
        assert!(
            r.iter()
                .all(|q| serde_json::to_vec(q).map_or(0, |v| v.len()) < 256 * 1024)
        );
        assert_eq!(r.iter().map(|q| q.users.len()).sum::<usize>(), 1203);
        let last_two: Vec<(usize, usize, usize)> = r[r.len() - 2..]
            .iter()
            .map(|q| (q.users.len(), q.groups.len(), q.memberships.len()))
            .collect();
        assert_eq!(last_two, vec![(0, 1, 0), (0, 0, 1)]);
    }
}

/// A dry run's selection: the users and groups this agent imported before (`mine`) taken out
/// and reported as `already`, every other objectGUID replaced by a `fresh` stand-in (memberships
/// follow). Returns the selection to send, the `already` items and stand-in → real GUID.
#[allow(clippy::type_complexity)]
pub fn stand_in<E>(
    mut s: Selection,
    mine: &HashSet<Vec<u8>>,
    fresh: &mut impl FnMut() -> Result<String, E>,
) -> Result<
    (
        Selection,
        Vec<ReportItem>,
        std::collections::HashMap<String, String>,
    ),
    E,
> {
    let is_mine = |g: &str| object::parse_guid_string(g).is_some_and(|b| mine.contains(&b));
    let already = |kind: &str, name: &str, guid: &str| ReportItem {
        kind: kind.into(),
        name: name.into(),
        guid: guid.into(),
        outcome: "already".into(),
        message: "imported by this agent before".into(),
    };
    let mut done = Vec::new();
    let mut map: std::collections::HashMap<String, String> = Default::default();
    let mut back: std::collections::HashMap<String, String> = Default::default();
    let mut users = Vec::new();
    for mut u in std::mem::take(&mut s.users) {
        if is_mine(&u.guid) {
            done.push(already("user", &u.username, &u.guid));
            continue;
        }
        let f = fresh()?;
        back.insert(u.guid.clone(), f.clone());
        map.insert(f.clone(), std::mem::replace(&mut u.guid, f));
        users.push(u);
    }
    let mut groups = Vec::new();
    for mut g in std::mem::take(&mut s.groups) {
        if is_mine(&g.guid) {
            done.push(already("group", &g.name, &g.guid));
            continue;
        }
        let f = fresh()?;
        back.insert(g.guid.clone(), f.clone());
        map.insert(f.clone(), std::mem::replace(&mut g.guid, f));
        groups.push(g);
    }
    for m in s.memberships.iter_mut() {
        for guid in [&mut m.group_guid, &mut m.member_guid] {
            if let Some(f) = back.get(guid.as_str()) {
                *guid = f.clone();
            }
        }
    }
    s.users = users;
    s.groups = groups;
    Ok((s, done, map))
}

/// The users and groups an import answer linked (created, linked now or before), by
/// objectGUID: what the agent records as its own consent.
pub fn consent(items: &[ImportItem]) -> Vec<(Vec<u8>, &'static str)> {
    items
        .iter()
        .filter(|i| i.outcome != ImportOutcome::Refused)
        .filter_map(|i| {
            let kind = match i.kind.as_str() {
                "user" => "user",
                "group" => "group",
                _ => return None,
            };
            object::parse_guid_string(&i.guid).map(|g| (g, kind))
        })
        .collect()
}

/// Why an import could not run at all (a refused item is not one: it is reported).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    State(String),
    #[error("{0}")]
    Ad(String),
    #[error("{0}")]
    Cloud(String),
    #[error("--group {0}")]
    Group(String),
}

/// Reads AD and imports what `select` chooses; `group` limits it to that group's members
/// (nested included) and the group itself. A dry run asks the cloud what it would do with the
/// users and groups (memberships are counted, not sent: they need the objects linked first).
///
/// What the cloud linked (created, linked, or linked before) is recorded in `state` as each
/// answer arrives: those links, and no others, stand for the adoption setting in later runs.
pub async fn run(
    agent: &crate::Agent,
    state: &mut crate::state::State,
    group: Option<&str>,
    dry_run: bool,
    meter: &crate::progress::Meter,
) -> Result<Report, ImportError> {
    meter.start(ad_sync_core::progress::Task::Import, dry_run);
    let r = connect_read_send(agent, state, group, dry_run, meter).await;
    meter.finish();
    r
}

async fn connect_read_send(
    agent: &crate::Agent,
    state: &mut crate::state::State,
    group: Option<&str>,
    dry_run: bool,
    meter: &crate::progress::Meter,
) -> Result<Report, ImportError> {
    let group = match group {
        Some(text) => Some(
            ad_sync_core::dn::Dn::parse(text)
                .map_err(|e| {
                    ImportError::Group(format!(
                        "`{text}` is not a DN: {}; give the group's distinguished name",
                        e.message
                    ))
                })?
                .dn
                .to_comma_form(),
        ),
        None => None,
    };
    let ad = ad::Ad::connect(&agent.answers, &agent.password)
        .await
        .map_err(|e| ImportError::Ad(e.to_string()))?;
    let r = read_and_send(agent, &ad, state, group.as_deref(), dry_run, meter).await;
    ad.close().await;
    r
}

async fn read_and_send(
    agent: &crate::Agent,
    ad: &ad::Ad,
    state: &mut crate::state::State,
    group: Option<&str>,
    dry_run: bool,
    meter: &crate::progress::Meter,
) -> Result<Report, ImportError> {
    use ad_sync_core::progress::Phase;
    meter.phase(Phase::ReadingAd, None);
    let ad_err = |e: ad::AdError| ImportError::Ad(e.to_string());
    let started = std::time::Instant::now();
    let root = ad.scope.root_text();
    let mut objs = ad
        .search_paged(&root, object::PEOPLE_FILTER, &object::import_attrs())
        .await
        .map_err(ad_err)?;
    meter.tick(objs.len() as u64);
    if let Some(dn) = group {
        let Some(g) = ad.read(dn).await.map_err(ad_err)?.filter(|o| o.is_group) else {
            return Err(ImportError::Group(format!(
                "{dn}: there is no group with that DN in AD; copy its distinguishedName from AD"
            )));
        };
        let mut wanted = ad.nested_members(dn).await.map_err(ad_err)?;
        wanted.insert(g.guid);
        objs.retain(|o| wanted.contains(&o.guid));
    }
    let read = started.elapsed();
    let tier0 = ad.tier0().await.map_err(ad_err)?;
    tracing::info!(
        objects = objs.len(),
        read_seconds = read.as_secs_f64(),
        tier0_seconds = (started.elapsed() - read).as_secs_f64(),
        "read AD"
    );
    let sync_group = match &ad.scope.sync_group {
        Some(dn) => ad.read(&dn.to_comma_form()).await.map_err(ad_err)?,
        None => None,
    };
    let selection = select(
        &objs,
        &ad.scope,
        sync_group.as_ref().map(|o| o.guid.as_slice()),
        &tier0,
    );
    tracing::info!(
        users = selection.users.len(),
        groups = selection.groups.len(),
        memberships = selection.memberships.len(),
        skipped = selection.skipped.len(),
        dry_run,
        "importing AD into the cloud"
    );
    let mut report = Report {
        dry_run,
        ..Report::default()
    };
    for item in &selection.skipped {
        report.add(item.clone());
    }
    let mut selection = selection;
    let mut real_guid: std::collections::HashMap<String, String> = Default::default();
    if dry_run {
        // A dry run never tells the cloud which objectGUIDs AD holds: what this agent linked
        // before is reported from its own record, the rest goes under stand-in GUIDs (the
        // cloud decides by name and content alone), put back in the report.
        let mine = state
            .imported()
            .map_err(|e| ImportError::State(e.to_string()))?;
        let mut fresh = || {
            let mut b = [0u8; 16];
            getrandom::fill(&mut b).map(|()| object::guid_string(&b))
        };
        let (kept, already, map) = stand_in(selection, &mine, &mut fresh)
            .map_err(|e| ImportError::State(format!("no random numbers for the dry run: {e}")))?;
        selection = kept;
        real_guid = map;
        for item in already {
            report.add(item);
        }
    }
    let mut reqs = requests(&selection, dry_run);
    if dry_run {
        // Memberships need their objects linked first: in a dry run they are counted only.
        for req in reqs.iter().filter(|r| !r.memberships.is_empty()) {
            for m in &req.memberships {
                report.add(ReportItem {
                    kind: "membership".into(),
                    name: format!("{} <- {}", m.group_guid, m.member_guid),
                    guid: m.member_guid.clone(),
                    outcome: "would add".into(),
                    message: String::new(),
                });
            }
        }
        reqs.retain(|r| r.memberships.is_empty());
    }
    let items = |r: &ImportRequest| (r.users.len() + r.groups.len() + r.memberships.len()) as u64;
    meter.phase(Phase::Sending, Some(reqs.iter().map(items).sum()));
    // Users, then groups, then memberships; within each kind two requests in flight (the
    // cloud answers them one after the other, but the next one is on its way meanwhile).
    let kind = |r: &ImportRequest| (r.users.is_empty(), r.groups.is_empty());
    for same_kind in reqs.chunk_by(|a, b| kind(a) == kind(b)) {
        let answers: Vec<_> = futures_util::stream::iter(same_kind)
            .map(|req| async move {
                let r = agent.client.import(&agent.credential, req).await;
                meter.tick(items(req));
                r
            })
            .buffered(2)
            .collect()
            .await;
        for resp in answers {
            let resp = resp.map_err(|e| ImportError::Cloud(format!("importing into the cloud: {e}; {}. What was sent before is imported; run the import again to finish (it skips what is there)", e.fix())))?;
            if !dry_run {
                let linked = consent(&resp.items);
                state
                    .record_imported(&linked, ad_sync_core::time_fmt::now_unix())
                    .map_err(|e| ImportError::State(e.to_string()))?;
            }
            for item in resp.items {
                let mut item: ReportItem = item.into();
                if let Some(real) = real_guid.get(&item.guid) {
                    item.guid = real.clone();
                }
                report.add(item);
            }
        }
    }
    tracing::info!(
        seconds = (started.elapsed()).as_secs_f64(),
        items = report.items.len(),
        "import done"
    );
    Ok(report)
}
