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
use ad_sync_core::cloud::api::{
    MAX_SOURCE_ITEMS, SourceCursor, SourceOutcome, SourceRequest, SourceResponse, SourceUser,
};
use ad_sync_core::cloud::client::CloudClient;
use ad_sync_core::directory::dirsync::{self, Delta};
use ad_sync_core::directory::object::{ATTRS, Obj, guid_filter, guid_string, object};
use ad_sync_core::mapping::{Kind, Mapping};
use ad_sync_core::secret::Secret;
use ad_sync_core::source_scope::{Scope, Verdict, decide};
use std::collections::{BTreeMap, HashMap};

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
    /// Users left out by the scope's rules (objectGUID, why), sent as gone.
    pub left_out: Vec<(String, String)>,
}

/// What the cloud is sent for one changed user. `obj` is the user as read now by its GUID
/// (`None`: it cannot be read, so it is gone), with `values` its attributes; `deleted` is what
/// DirSync said. Returns the change, and why the scope left it out when it did.
pub fn plan_user(
    guid: &str,
    deleted: bool,
    obj: Option<&Obj>,
    values: &BTreeMap<String, Vec<String>>,
    scope: &Scope,
    mapping: &Mapping,
) -> (SourceUser, Option<String>) {
    let gone = SourceUser {
        guid: guid.to_string(),
        deleted: true,
        enabled: None,
        fields: BTreeMap::new(),
    };
    let Some(obj) = obj.filter(|_| !deleted) else {
        return (gone, None);
    };
    // An account the agent made or took over for a cloud user is the cloud's: its changes
    // came from the cloud and never travel back (no ping-pong).
    if let Some(id) = obj.marker_id() {
        return (
            gone,
            Some(format!(
                "it is the cloud user {id}'s account, which the agent manages: the cloud is its authority"
            )),
        );
    }
    let candidate = ad_sync_core::source_scope::Candidate {
        guid: &obj.guid,
        dn: obj.parsed.as_ref(),
        sam: &obj.sam,
        computer: !obj.is_user,
        rid: obj.rid,
        critical: obj.critical,
        protected: obj.protected.as_deref(),
        in_groups: None,
        matches_filter: None,
    };
    match decide(scope, &candidate) {
        Verdict::Export | Verdict::Named(_) => {
            let record = mapping.record(Kind::User, values);
            // The whole record: a mapped field without a value in AD is cleared in the cloud.
            let fields = mapping
                .rows(Kind::User)
                .filter(|(_, attr)| attr.is_some())
                .map(|(row, _)| {
                    (
                        row.field.to_string(),
                        record.get(row.field).cloned().unwrap_or_default(),
                    )
                })
                .collect();
            (
                SourceUser {
                    guid: guid.to_string(),
                    deleted: false,
                    enabled: Some(obj.enabled()),
                    fields,
                },
                None,
            )
        }
        Verdict::Out(why) | Verdict::Never(why) => (gone, Some(why)),
    }
}

/// The DirSync search: every user object (computers are users too; the scope leaves them out).
const FILTER: &str = "(objectClass=user)";
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
];

/// Reads AD's changes since the cloud's cursor and sends them, page by page, each with its
/// cookie. `dc` names the DC the connection is to.
pub async fn export(
    ad: &Ad,
    client: &CloudClient,
    credential: &Secret,
    dc: &str,
    scope: &Scope,
    mapping: &Mapping,
) -> Result<ExportReport, String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let cursor: SourceCursor = client
        .source_cursor(credential)
        .await
        .map_err(|e| format!("reading the cloud's AD cursor: {e}; {}", e.fix()))?;
    let same_dc = cursor
        .dc
        .as_deref()
        .is_some_and(|d| d.eq_ignore_ascii_case(dc));
    let start: Vec<u8> = match (&cursor.cookie, same_dc) {
        (Some(c), true) => b64
            .decode(c)
            .map_err(|e| format!("the cloud's AD cursor is not a cookie this agent sent ({e})"))?,
        _ => Vec::new(),
    };
    let mut report = ExportReport {
        full: start.is_empty(),
        ..ExportReport::default()
    };
    let mut after = cursor.cookie.clone();
    let mut read_attrs: Vec<&str> = ATTRS.to_vec();
    for a in mapping.attributes(Kind::User) {
        if !read_attrs.iter().any(|r| r.eq_ignore_ascii_case(a)) {
            read_attrs.push(a);
        }
    }
    let mut watched: Vec<&str> = WATCHED.to_vec();
    for a in mapping.attributes(Kind::User) {
        if !watched.iter().any(|w| w.eq_ignore_ascii_case(a)) {
            watched.push(a);
        }
    }
    let mut reader = dirsync::Dc::new(ad.ldap(), &ad.domain_dn, FILTER, &watched, ad.timeout())?;
    let report_ref = &mut report;
    let after_ref = &mut after;
    let drained = dirsync::drain(&mut reader, &start, async |deltas: Vec<Delta>, answer| {
        {
            report_ref.pages += 1;
            report_ref.changed += deltas.len();
            // Every changed, not deleted user read whole by its GUID, 100 per search.
            let wanted: Vec<&Delta> = deltas.iter().filter(|d| !d.deleted).collect();
            let mut read: HashMap<String, (Obj, BTreeMap<String, Vec<String>>)> = HashMap::new();
            for chunk in wanted.chunks(100) {
                let terms: String = chunk
                    .iter()
                    .filter_map(|d| ad_sync_core::directory::object::parse_guid_string(&d.guid))
                    .map(|g| guid_filter(&g))
                    .collect();
                let entries = ad
                    .search_with(&format!("(|{terms})"), &read_attrs)
                    .await
                    .map_err(|e| e.to_string())?;
                for e in entries {
                    let o = object(&e);
                    let values: BTreeMap<String, Vec<String>> = e.attrs.into_iter().collect();
                    read.insert(guid_string(&o.guid), (o, values));
                }
            }
            let mut users = Vec::with_capacity(deltas.len());
            for d in &deltas {
                let (obj, values) = match read.get(&d.guid) {
                    Some((o, v)) => (Some(o), v.clone()),
                    None => (None, BTreeMap::new()),
                };
                let (user, why) = plan_user(&d.guid, d.deleted, obj, &values, scope, mapping);
                if let Some(why) = why {
                    report_ref.left_out.push((d.guid.clone(), why));
                }
                users.push(user);
            }
            let cookie = b64.encode(&answer.cookie);
            let parts: Vec<&[SourceUser]> = if users.is_empty() {
                vec![&[]]
            } else {
                users.chunks(MAX_SOURCE_ITEMS).collect()
            };
            let n = parts.len();
            for (i, part) in parts.into_iter().enumerate() {
                let last = i + 1 == n;
                let req = SourceRequest {
                    after: after_ref.clone(),
                    cookie: if last { cookie.clone() } else { String::new() },
                    dc: dc.to_string(),
                    users: part.to_vec(),
                    partial: !last,
                };
                let resp: SourceResponse = client
                    .source_changes(credential, &req)
                    .await
                    .map_err(|e| format!("sending AD's changes to the cloud: {e}; {}", e.fix()))?;
                count(report_ref, &resp);
            }
            *after_ref = Some(cookie);
            Ok::<(), String>(())
        }
    })
    .await;
    drained.map_err(|e| e.to_string())?;
    Ok(report)
}

/// One export as `ad-sync-agent export` runs it: the scope's containers (the Root User
/// container when none are given) and the protected accounts named one by one; the service
/// account is found and left out. Only the primary exports (`Ok(None)` on a standby).
pub async fn export_once(
    agent: &crate::Agent,
    containers: &[String],
    named: &[String],
) -> Result<Option<ExportReport>, String> {
    use ad_sync_core::dn::Dn;
    let (role, _) = agent.heartbeat(None).await.map_err(|e| e.to_string())?;
    if role != ad_sync_core::cloud::api::Role::Primary {
        return Ok(None);
    }
    let texts: Vec<String> = if containers.is_empty() {
        vec![agent.answers.directory.root_user_dn.clone()]
    } else {
        containers.to_vec()
    };
    let mut parsed = Vec::new();
    for t in &texts {
        parsed.push(
            Dn::parse(t)
                .map(|p| p.dn)
                .map_err(|e| format!("--container `{t}` is not a DN ({}); pick the container in ADUC and copy its distinguishedName", e.message))?,
        );
    }
    let ad = Ad::connect(&agent.answers, &agent.password)
        .await
        .map_err(|e| e.to_string())?;
    let account =
        ad_sync_core::directory::bind::AccountName::parse(&agent.answers.service_account.username)
            .map_err(|e| format!("[service_account] username {e}"))?;
    let me = ad
        .search_with(&account.search_filter(), &["objectGUID"])
        .await
        .map_err(|e| e.to_string())?;
    let service_account = me.first().map(|e| object(e).guid);
    let scope = Scope {
        containers: parsed,
        named: named.to_vec(),
        service_account,
        ..Scope::default()
    };
    scope.check()?;
    let dc = agent
        .answers
        .connect_options(Some(&ad.scope.dns_domain))
        .host;
    let r = export(
        &ad,
        &agent.client,
        &agent.credential,
        &dc,
        &scope,
        &Mapping::default(),
    )
    .await;
    ad.close().await;
    r.map(Some)
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
        let (u, why) = plan_user(g, false, Some(&ann), &v, &scope, &mapping);
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
        let (u, _) = plan_user(g, false, Some(&off), &v, &scope, &mapping);
        assert_eq!(u.enabled, Some(false));

        // A switched-off row is not sent at all.
        let no_title = Mapping::from_config(&ad_sync_core::mapping::Config {
            user: [(
                "title".into(),
                ad_sync_core::mapping::Setting::Switch(false),
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let (u, _) = plan_user(g, false, Some(&ann), &v, &scope, &no_title);
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
            let (u, why) = plan_user(g, deleted, o, &v, &scope, &mapping);
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
