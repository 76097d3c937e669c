//! `source.scope`, `source.changes`, `source.deletions` and `mapping.attributes`: AD as a
//! source's scope, how its changes are read, and its attribute map, checked
//! against the live DC as the service account before anything is written. Reported only when
//! `[sync] direction` has AD as a source (`ad-to-cloud`, `both`).
//!
//! The I/O here reads: each scope container and group by DN, the users the scope selects (a
//! paged count, objectGUID only, with the groups' nesting and the filter evaluated by the DC),
//! and each mapped attribute's `attributeSchema` entry. `scope_result` and `mapping_result` are
//! the pure decisions, table-tested.

use super::CheckResult;
use super::ids::{MAPPING_ATTRIBUTES, SOURCE_CHANGES, SOURCE_DELETIONS, SOURCE_SCOPE};
use crate::answers::Answers;
use crate::directory::EntryExt;
use crate::directory::object;
use crate::mapping::{Kind, Mapping};
use ldap3::Scope as LdapScope;

/// What was found for one scope container or group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Missing,
    /// It exists: its objectClass values and, for a group, its groupType.
    Entry {
        classes: Vec<String>,
        group_type: Option<i64>,
    },
}

/// What the DC said about the scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeFacts {
    pub containers: Vec<(String, Found)>,
    pub groups: Vec<(String, Found)>,
    /// The users it selects (`Err`: the DC refused the search, with its words).
    pub users: Result<usize, String>,
}

/// One mapped row and what the schema says of its attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedAttr {
    /// `[mapping.user] title`.
    pub key: String,
    pub attribute: String,
    /// `searchFlags` of its attributeSchema; `None`: the schema has no such attribute.
    pub search_flags: Option<i64>,
}

/// `searchFlags` bit: a confidential attribute, readable only with the control-access right.
const CONFIDENTIAL: i64 = 0x80;
/// `groupType` bit: a security group (else a distribution group).
const SECURITY: i64 = 0x8000_0000;

/// The LDAP filter of the users `scope` selects under one container (without the rules no
/// scope overrides: those decide per object in the agent).
pub fn users_filter(scope: &crate::source_scope::Scope) -> String {
    let mut f = String::from("(&(objectCategory=person)(objectClass=user)");
    f.push_str(&crate::source_scope::in_chain_clause(&scope.groups));
    if let Some(filter) = &scope.filter {
        f.push_str(filter);
    }
    f.push(')');
    f
}

/// `source.scope` from what the DC said.
pub fn scope_result(f: &ScopeFacts) -> CheckResult {
    let mut wrong = Vec::new();
    for (dn, found) in &f.containers {
        if *found == Found::Missing {
            wrong.push(format!(
                "the scope container {dn} does not exist, or the service account cannot read it"
            ));
        }
    }
    for (dn, found) in &f.groups {
        match found {
            Found::Missing => wrong.push(format!(
                "the scope group {dn} does not exist, or the service account cannot read it"
            )),
            Found::Entry {
                classes,
                group_type,
            } => {
                if !classes.iter().any(|c| c.eq_ignore_ascii_case("group")) {
                    wrong.push(format!("the scope group {dn} is not a group"));
                } else if group_type.is_none_or(|t| t & SECURITY == 0) {
                    wrong.push(format!(
                        "the scope group {dn} is a distribution group: the scope takes security groups"
                    ));
                }
            }
        }
    }
    if !wrong.is_empty() {
        return CheckResult::fail(
            SOURCE_SCOPE,
            wrong.join("; "),
            "",
            "Fix [source] containers and groups: pick each in ADUC and copy its distinguishedName (Attribute Editor), or in the wizard's scope page.",
        );
    }
    match &f.users {
        Err(why) => CheckResult::fail(
            SOURCE_SCOPE,
            format!("the domain controller refused the scope's search: {why}"),
            "",
            "Fix [source] filter: one LDAP filter in parentheses, with attribute names AD knows, like (department=Sales).",
        ),
        Ok(0) => CheckResult::warn(
            SOURCE_SCOPE,
            "the scope selects no user: nothing would be sent to the cloud",
            format!(
                "{} container(s), {} group(s)",
                f.containers.len(),
                f.groups.len()
            ),
            "Check [source] containers, groups and filter; a group scope counts members however nested.",
        ),
        Ok(n) => CheckResult::pass(
            SOURCE_SCOPE,
            format!(
                "the scope selects {} user{}",
                crate::policy::count(*n),
                if *n == 1 { "" } else { "s" }
            ),
            format!(
                "in {} container(s){}; computers, the service account, krbtgt, built-in accounts and protected accounts not named one by one are never sent",
                f.containers.len(),
                if f.groups.is_empty() {
                    String::new()
                } else {
                    format!(", members of {} group(s) however nested", f.groups.len())
                }
            ),
        ),
    }
}

/// What the service account sees of Deleted Objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletions {
    /// A one-level search lists tombstones: DirSync will show it deletions.
    Listed,
    /// Nothing listed (nothing deleted yet, or no right); its DACL, which it may read, says
    /// whether it may list and read there (`directory::sd::lists_and_reads`).
    Dacl(bool),
    /// Nothing listed, and it may not read the DACL: as Windows hides Deleted Objects from
    /// everyone but SYSTEM and Administrators.
    Hidden,
}

/// `source.deletions` from what the service account `account` sees of Deleted Objects in
/// `domain` (`Err`: the DC's words when the question itself failed).
pub fn deletions_result(
    seen: &Result<Deletions, String>,
    account: &str,
    domain: &str,
) -> CheckResult {
    let later = "an object deleted in AD is suspended in the cloud only by the full reconciliation, once a day (or at once with `ad-sync-agent export --resync`)";
    let fix = format!(
        "To send deletions with the next export, give the service account List Contents and Read Property there, as a Domain Admin: dsacls \"CN=Deleted Objects,{domain}\" /takeownership, then dsacls \"CN=Deleted Objects,{domain}\" /G \"{account}:LCRP\". Nothing else is needed; the agent never writes there."
    );
    let container = format!("CN=Deleted Objects,{domain}");
    match seen {
        Ok(Deletions::Listed) | Ok(Deletions::Dacl(true)) => CheckResult::pass(
            SOURCE_DELETIONS,
            "deletions in AD reach the cloud with the next export",
            format!(
                "the service account can list {container}, which DirSync needs to show deletions"
            ),
        ),
        Ok(Deletions::Dacl(false)) => CheckResult::warn(
            SOURCE_DELETIONS,
            format!(
                "the service account cannot list Deleted Objects, so DirSync does not show it deletions: {later}"
            ),
            format!(
                "its permissions on {container} do not give it List Contents and Read Property"
            ),
            fix,
        ),
        Ok(Deletions::Hidden) => CheckResult::warn(
            SOURCE_DELETIONS,
            format!(
                "the service account sees nothing in Deleted Objects, as when it may not list it (Windows' default): then DirSync does not show it deletions, and {later}"
            ),
            format!("{container}: nothing listed, and this account may not read its permissions"),
            fix,
        ),
        Err(why) => CheckResult::warn(
            SOURCE_DELETIONS,
            format!(
                "whether the service account can list Deleted Objects could not be read ({why}): if it cannot, {later}"
            ),
            container,
            fix,
        ),
    }
}

/// How the DC answered a DirSync request of the service account (`source.changes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changes {
    /// DirSync answered.
    Dirsync,
    /// The DC refused DirSync (its words): the agent reads by `uSNChanged`.
    Refused(String),
    /// `[source] change_detection = "usn"`: DirSync is not asked for; the DC's highest USN
    /// was read.
    Forced,
    /// The question itself failed (its words).
    Failed(String),
}

/// `source.changes` from how the DC answered.
pub fn changes_result(seen: &Changes) -> CheckResult {
    let usn_costs = "each changed object is read whole and a changed group with its whole member list (a list the DC answers in ranges, past 1,500 members on Windows, waits for the daily reconciliation)";
    match seen {
        Changes::Dirsync => CheckResult::pass(
            SOURCE_CHANGES,
            "AD's changes are read with DirSync: each change once, a group's members value by value",
            "the DC answered a DirSync request of the service account (object security: no replication right is needed)",
        ),
        Changes::Forced => CheckResult::pass(
            SOURCE_CHANGES,
            "AD's changes are read by uSNChanged, as [source] change_detection asks",
            format!("DirSync is not asked for; {usn_costs}"),
        ),
        Changes::Refused(why) => CheckResult::warn(
            SOURCE_CHANGES,
            format!(
                "the DC refuses DirSync to the service account, so the agent reads AD's changes by uSNChanged instead: {usn_costs}"
            ),
            format!("the DC answered the DirSync request: {why}"),
            "Nothing is needed for the agent to work. To read only what changed, find what refuses DirSync (a policy, or something in front of the DC that does not pass the control 1.2.840.113556.1.4.841) and lift it; the agent then uses DirSync after its next full read. To stay on uSNChanged deliberately, write [source] change_detection = \"usn\".",
        ),
        Changes::Failed(why) => CheckResult::warn(
            SOURCE_CHANGES,
            format!(
                "whether the DC gives the service account DirSync could not be asked ({why}); if it refuses it, the agent reads by uSNChanged instead"
            ),
            "the DirSync request failed for another reason than a refusal",
            "Check that the DC answers (see the checks above) and run the checks again.",
        ),
    }
}

/// Asks the DC for DirSync as the agent does, for nothing (a filter no object matches), so a
/// refusal shows now, not at the first export.
async fn asks_dirsync(
    session: &crate::directory::Session,
    domain: &str,
    answers: &Answers,
) -> Changes {
    use crate::answers::ChangeDetection;
    use crate::directory::{dirsync, usn};
    let forced = answers
        .source
        .as_ref()
        .is_some_and(|s| s.change_detection == ChangeDetection::Usn);
    if forced {
        return match usn::highest(&session.handle(), session.op_timeout()).await {
            Ok(_) => Changes::Forced,
            Err(e) => Changes::Failed(format!("reading the DC's highest USN: {e}")),
        };
    }
    let ldap = session.handle();
    let mut dc = match dirsync::Dc::new(
        &ldap,
        domain,
        // The filter the agent takes its position with: the answer is a cookie and nothing
        // else.
        dirsync::NOTHING,
        &["objectGUID"],
        session.op_timeout(),
    ) {
        Ok(dc) => dc,
        Err(e) => return Changes::Failed(e),
    };
    use dirsync::Pages as _;
    match dc.page(&[]).await {
        Ok((_, Some(_))) => Changes::Dirsync,
        Ok((_, None)) => Changes::Refused(
            "it answered without the DirSync control, so it does not support DirSync".into(),
        ),
        Err(e) if usn::refuses_dirsync(&e) => Changes::Refused(e.to_string()),
        Err(e) => Changes::Failed(e.to_string()),
    }
}

/// What the first export from AD would do with one kind of object (`sync.preview` when AD is
/// a source).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FromAd {
    /// New to the cloud: created there, with AD as their authority.
    pub create: usize,
    /// Already linked to a cloud object (an earlier import or export): brought up to date.
    pub update: usize,
    /// Refused by the cloud: it has an object of that name that does not come from this AD
    /// object (name, why).
    pub taken: Vec<(String, String)>,
    /// Inside the scope's containers, never sent (name, why): protected, privileged, built-in,
    /// the agent's own.
    pub never: Vec<(String, String)>,
}

/// The first export from AD, decided as the agent decides (`source_scope::decide`, with who
/// holds power from `tier0`), against the names and links of the cloud's directory `cloud`.
/// `objs` are the domain's users and groups; `selected` the users the DC selects by the scope's
/// groups and filter (`None` when the scope has neither); `domain` the naming context links
/// name. Returns (users, groups).
pub fn from_ad(
    objs: &[object::Obj],
    selected: Option<&std::collections::HashSet<Vec<u8>>>,
    tier0: &crate::tier0::Tier0,
    scope: &crate::source_scope::Scope,
    cloud: &crate::cloud::api::DirectoryResponse,
    domain: &crate::dn::Dn,
) -> (FromAd, FromAd) {
    use crate::source_scope::{Candidate, Verdict, decide};
    let mut users = FromAd::default();
    let mut groups = FromAd::default();
    // What the cloud holds of each kind, looked up once per AD object: (the objectGUIDs its
    // objects are linked to in this domain, their names), in ASCII lowercase as the cloud
    // compares them.
    let held = |entries: &[crate::cloud::api::DirectoryEntry]| {
        let links: std::collections::HashSet<String> = entries
            .iter()
            .filter_map(|e| crate::cloud::api::link_for(&e.links, domain))
            .map(|l| l.guid.to_ascii_lowercase())
            .collect();
        let names: std::collections::HashSet<String> = entries
            .iter()
            .map(|e| e.name.to_ascii_lowercase())
            .collect();
        (links, names)
    };
    let (held_users, held_groups) = (held(&cloud.users), held(&cloud.groups));
    for o in objs {
        if !(o.is_user || o.is_group) || o.marker_id().is_some() {
            continue;
        }
        let protected = tier0.why(o);
        let candidate = Candidate {
            guid: &o.guid,
            dn: o.parsed.as_ref(),
            sam: &o.sam,
            computer: false,
            rid: o.rid,
            critical: o.critical,
            protected: protected.as_deref(),
            in_groups: if o.is_user {
                selected.map(|s| s.contains(&o.guid))
            } else {
                None
            },
            matches_filter: None,
        };
        let (out, (links, names)) = if o.is_group {
            (&mut groups, &held_groups)
        } else {
            (&mut users, &held_users)
        };
        match decide(scope, &candidate) {
            Verdict::Export | Verdict::Named(_) => {
                let guid = crate::guid::guid_string(&o.guid);
                if links.contains(&guid.to_ascii_lowercase()) {
                    out.update += 1;
                } else if names.contains(&o.sam.to_ascii_lowercase()) {
                    out.taken.push((
                        o.sam.clone(),
                        format!(
                            "the cloud already has a {} named `{}` that does not come from this AD object",
                            if o.is_group { "group" } else { "user" },
                            o.sam
                        ),
                    ));
                } else {
                    out.create += 1;
                }
            }
            Verdict::Never(why) if scope.holds(o.parsed.as_ref()) => {
                out.never.push((o.sam.clone(), why));
            }
            Verdict::Never(_) | Verdict::Out(_) => {}
        }
    }
    // Listed by name, the same way every time.
    for c in [&mut users, &mut groups] {
        c.taken.sort_by_key(|(n, _)| n.to_lowercase());
        c.never.sort_by_key(|(n, _)| n.to_lowercase());
    }
    (users, groups)
}

/// The words of `sync.preview` for the first export from AD: (summary, detail lines, whether
/// something the administrator probably wants will not reach the cloud).
pub fn from_ad_words(users: &FromAd, groups: &FromAd) -> (String, Vec<String>, bool) {
    let line = |kind: &str, c: &FromAd| {
        format!(
            "{kind}: {} to create, {} to update, {} refused (the name is taken)",
            crate::policy::count(c.create),
            crate::policy::count(c.update),
            c.taken.len()
        )
    };
    let summary = format!(
        "first export from AD: {}; {}",
        line("users", users),
        line("groups", groups)
    );
    let mut detail = Vec::new();
    for (kind, c) in [("user", users), ("group", groups)] {
        if !c.taken.is_empty() {
            detail.push(format!(
                "{kind}s refused by the cloud: {}",
                super::preview::names(&c.taken)
            ));
        }
        if !c.never.is_empty() {
            detail.push(format!(
                "{kind}s in the scope never sent: {}",
                super::preview::names(&c.never)
            ));
        }
    }
    (
        summary,
        detail,
        !(users.taken.is_empty() && groups.taken.is_empty()),
    )
}

/// `mapping.attributes` from the schema's answers.
pub fn mapping_result(rows: &[MappedAttr]) -> CheckResult {
    let missing: Vec<String> = rows
        .iter()
        .filter(|r| r.search_flags.is_none())
        .map(|r| {
            format!(
                "{} reads {}, which AD's schema does not have",
                r.key, r.attribute
            )
        })
        .collect();
    if !missing.is_empty() {
        return CheckResult::fail(
            MAPPING_ATTRIBUTES,
            missing.join("; "),
            "",
            "Map each row to an attribute AD has (its lDAPDisplayName, as ADSI Edit or the Attribute Editor shows it), or switch the row off with false.",
        );
    }
    let confidential: Vec<String> = rows
        .iter()
        .filter(|r| r.search_flags.is_some_and(|f| f & CONFIDENTIAL != 0))
        .map(|r| format!("{} reads {}, a confidential attribute", r.key, r.attribute))
        .collect();
    if !confidential.is_empty() {
        return CheckResult::warn(
            MAPPING_ATTRIBUTES,
            confidential.join("; "),
            "a confidential attribute (searchFlags 0x80) is read only by accounts given the control-access right on it; for others AD returns it empty, and the cloud field would be cleared",
            "Grant the service account Control Access on that attribute for the scope's users, or map the row to another attribute.",
        );
    }
    CheckResult::pass(
        MAPPING_ATTRIBUTES,
        format!("the {} mapped attributes exist in AD's schema", rows.len()),
        rows.iter()
            .map(|r| format!("{} <- {}", r.key, r.attribute))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// AD as a source's checks against the DC; empty when AD is not a source.
pub async fn run(answers: &Answers) -> Vec<CheckResult> {
    if !answers.sync.direction.from_ad() {
        return Vec::new();
    }
    match look(answers).await {
        Ok((scope, changes, deletions, mapping)) => vec![
            scope_result(&scope),
            changes_result(&changes),
            deletions_result(
                &deletions,
                &answers.service_account.username,
                &domain_text(answers),
            ),
            mapping_result(&mapping),
        ],
        Err(why) => vec![
            CheckResult::skip(SOURCE_SCOPE, why.clone()),
            CheckResult::skip(SOURCE_CHANGES, why.clone()),
            CheckResult::skip(SOURCE_DELETIONS, why.clone()),
            CheckResult::skip(MAPPING_ATTRIBUTES, why),
        ],
    }
}

/// The mapped rows in force, each with the config key that sets it.
fn mapped(mapping: &Mapping) -> Vec<(String, String)> {
    Kind::ALL
        .iter()
        .flat_map(|&k| {
            mapping.rows(k).filter_map(move |(row, attr)| {
                attr.map(|a| {
                    (
                        format!("[mapping.{}] {}", k.section(), row.field),
                        a.to_string(),
                    )
                })
            })
        })
        .collect()
}

type Looked = (
    ScopeFacts,
    Changes,
    Result<Deletions, String>,
    Vec<MappedAttr>,
);

/// The domain's naming context (`DC=example,DC=com`), from the Root User container.
fn domain_text(answers: &Answers) -> String {
    crate::adopt::Scope::from_answers(answers)
        .ok()
        .and_then(|s| s.domain_dn())
        .map(|d| d.to_comma_form())
        .unwrap_or_default()
}

async fn look(answers: &Answers) -> Result<Looked, String> {
    let scope = answers.source_scope(None)?;
    let mapping = Mapping::from_config(&answers.mapping)?;
    let domain = crate::adopt::Scope::from_answers(answers)?;
    let dns_domain = domain.dns_domain.clone();
    let (mut session, _) = super::preview::logon(answers, &dns_domain).await?;
    let looked = async {
        let read = |e: crate::directory::OpError| format!("reading the scope: {e}");
        let mut containers = Vec::new();
        for c in &scope.containers {
            let dn = c.to_comma_form();
            let e = session
                .read_entry(&dn, &["objectClass"])
                .await
                .map_err(read)?;
            containers.push((dn, found(e)));
        }
        let mut groups = Vec::new();
        for g in &scope.groups {
            let dn = g.to_comma_form();
            let e = session
                .read_entry(&dn, &["objectClass", "groupType"])
                .await
                .map_err(read)?;
            groups.push((dn, found(e)));
        }
        let all_there = containers
            .iter()
            .chain(groups.iter())
            .all(|(_, f)| *f != Found::Missing);
        let users = if all_there {
            count_users(&session, &scope).await
        } else {
            Ok(0)
        };
        let facts = ScopeFacts {
            containers,
            groups,
            users,
        };
        let changes = asks_dirsync(&session, &domain_text(answers), answers).await;
        let deletions = sees_deletions(&mut session, &domain_text(answers), answers).await;
        // The schema's entry for every mapped attribute, in one search.
        let rows = mapped(&mapping);
        let root = session
            .search(
                "",
                LdapScope::Base,
                "(objectClass=*)",
                &["schemaNamingContext"],
            )
            .await
            .map_err(|e| format!("reading the RootDSE: {e}"))?;
        let schema = root
            .first()
            .and_then(|e| e.first("schemaNamingContext").map(str::to_string))
            .ok_or("the DC's RootDSE names no schemaNamingContext")?;
        let terms: String = rows
            .iter()
            .map(|(_, a)| format!("(lDAPDisplayName={})", ldap3::ldap_escape(a.as_str())))
            .collect();
        let entries = session
            .search(
                &schema,
                LdapScope::OneLevel,
                &format!("(&(objectClass=attributeSchema)(|{terms}))"),
                &["lDAPDisplayName", "searchFlags"],
            )
            .await
            .map_err(|e| format!("reading the schema: {e}"))?;
        let attrs = rows
            .into_iter()
            .map(|(key, attribute)| {
                let search_flags = entries
                    .iter()
                    .find(|e| {
                        e.first("lDAPDisplayName")
                            .is_some_and(|n| n.eq_ignore_ascii_case(&attribute))
                    })
                    .map(|e| e.int("searchFlags").unwrap_or(0));
                MappedAttr {
                    key,
                    attribute,
                    search_flags,
                }
            })
            .collect();
        Ok::<_, String>((facts, changes, deletions, attrs))
    }
    .await;
    session.close().await;
    looked
}

/// What the service account sees of Deleted Objects (what DirSync needs to show it
/// deletions): tombstones it can list; else the container's DACL against the account's SIDs
/// (its own, its groups' from tokenGroups, Everyone and Authenticated Users); else nothing.
async fn sees_deletions(
    session: &mut crate::directory::Session,
    domain: &str,
    answers: &Answers,
) -> Result<Deletions, String> {
    use crate::directory::{sd, sid};
    let account = crate::directory::bind::AccountName::parse(&answers.service_account.username)
        .map_err(|e| format!("the service account name {e}"))?;
    let read = |e: crate::directory::OpError| format!("reading who may list Deleted Objects: {e}");
    let me = session
        .search(
            domain,
            LdapScope::Subtree,
            &account.search_filter(),
            &["objectSid"],
        )
        .await
        .map_err(read)?
        .into_iter()
        .next()
        .ok_or("the service account's own entry was not found (see account.not_privileged)")?;
    let mut sids: Vec<String> = me
        .binary("objectSid")
        .first()
        .and_then(|b| sid::to_string(b))
        .into_iter()
        .collect();
    // tokenGroups is computed per entry: only a base read returns it.
    if let Some(tg) = session
        .read_entry(&me.dn, &["tokenGroups"])
        .await
        .map_err(read)?
    {
        sids.extend(
            tg.binary("tokenGroups")
                .iter()
                .filter_map(|b| sid::to_string(b)),
        );
    }
    sids.extend(["S-1-1-0".to_string(), "S-1-5-11".to_string()]);
    let controls = vec![
        ldap3::controls::RawControl {
            ctype: "1.2.840.113556.1.4.417".into(),
            crit: true,
            val: None,
        },
        ldap3::controls::RawControl {
            ctype: sd::SD_FLAGS_OID.into(),
            crit: false,
            val: Some(sd::SD_FLAGS_DACL.to_vec()),
        },
    ];
    let container = format!("CN=Deleted Objects,{domain}");
    if session
        .first_child_with(&container, controls[..1].to_vec())
        .await
        .map_err(read)?
    {
        return Ok(Deletions::Listed);
    }
    let entry = session
        .read_entry_with(&container, &["nTSecurityDescriptor"], controls)
        .await
        .map_err(read)?;
    match entry.and_then(|e| e.binary("nTSecurityDescriptor").into_iter().next()) {
        Some(bytes) => {
            let descriptor = sd::parse(&bytes).map_err(|e| {
                format!("the security descriptor of Deleted Objects is malformed ({e})")
            })?;
            Ok(Deletions::Dacl(sd::lists_and_reads(
                Some(&descriptor),
                &sids,
            )))
        }
        None => Ok(Deletions::Hidden),
    }
}

fn found(e: Option<ldap3::SearchEntry>) -> Found {
    match e {
        None => Found::Missing,
        Some(e) => Found::Entry {
            classes: e.all("objectClass").to_vec(),
            group_type: e.int("groupType"),
        },
    }
}

/// The users the scope selects, each counted once across its containers (paged: no size
/// limit cuts the count short); `Err` is the DC's refusal (a filter it cannot read).
async fn count_users(
    session: &crate::directory::Session,
    scope: &crate::source_scope::Scope,
) -> Result<usize, String> {
    selected_users(session, scope).await.map(|s| s.len())
}

/// The objectGUIDs of the users the scope's containers, groups and filter select, as the DC
/// evaluates the groups' nesting and the filter.
pub(super) async fn selected_users(
    session: &crate::directory::Session,
    scope: &crate::source_scope::Scope,
) -> Result<std::collections::HashSet<Vec<u8>>, String> {
    let filter = users_filter(scope);
    let mut seen = std::collections::HashSet::new();
    for c in &scope.containers {
        let mut pages = object::search_pages(
            &session.handle(),
            session.op_timeout(),
            &c.to_comma_form(),
            &filter,
            &["objectGUID"],
        )
        .await
        .map_err(|e| e.to_string())?;
        while let Some(page) = pages.next_page().await.map_err(|e| e.to_string())? {
            for e in page {
                let o = object::object(&e);
                // Strictly inside the container, as the scope's rule says.
                if o.parsed.as_ref().is_some_and(|d| !d.same_as(c)) {
                    seen.insert(o.guid);
                }
            }
        }
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How the DC answered DirSync, and what the page and `check` say: DirSync and a forced
    /// uSNChanged pass; a refusal warns and says what uSNChanged costs and how to lift it;
    /// a failed question warns without claiming a refusal.
    #[test]
    fn how_changes_are_read_is_said_with_what_it_costs() {
        use super::super::Status;
        for (seen, status, says) in [
            (Changes::Dirsync, Status::Pass, "read with DirSync"),
            (
                Changes::Forced,
                Status::Pass,
                "as [source] change_detection asks",
            ),
            (
                Changes::Refused("unavailableCriticalExtension (12)".into()),
                Status::Warn,
                "refuses DirSync",
            ),
            (
                Changes::Failed("timed out".into()),
                Status::Warn,
                "could not be asked",
            ),
        ] {
            let r = changes_result(&seen);
            assert_eq!(r.id, SOURCE_CHANGES);
            assert_eq!(r.status, status, "{seen:?}");
            assert!(r.summary.contains(says), "{seen:?}: {}", r.summary);
            assert!(!r.summary.contains('`') && !r.fix.contains('`'), "{r:?}");
            if status == Status::Warn {
                assert!(!r.fix.is_empty(), "{seen:?}");
            }
        }
        assert!(
            changes_result(&Changes::Refused("x".into()))
                .fix
                .contains("change_detection")
        );
    }
    use crate::preflight::Status;

    fn dn(t: &str) -> crate::dn::Dn {
        crate::dn::Dn::parse(t)
            .map(|p| p.dn)
            .unwrap_or_else(|e| panic!("{t}: {e:?}"))
    }

    fn entry(classes: &[&str], group_type: Option<i64>) -> Found {
        Found::Entry {
            classes: classes.iter().map(|c| c.to_string()).collect(),
            group_type,
        }
    }

    #[test]
    fn the_scope_check_names_what_is_wrong_and_counts_the_users() {
        let ou = (
            "OU=Staff,DC=example,DC=com".to_string(),
            entry(&["top", "organizationalUnit"], None),
        );
        let sec = (
            "CN=G,DC=example,DC=com".to_string(),
            entry(&["top", "group"], Some(-2147483646)),
        );
        let dist = (
            "CN=D,DC=example,DC=com".to_string(),
            entry(&["top", "group"], Some(2)),
        );
        let user = (
            "CN=U,DC=example,DC=com".to_string(),
            entry(&["top", "user"], None),
        );
        let gone = ("OU=Gone,DC=example,DC=com".to_string(), Found::Missing);
        let facts =
            |containers: Vec<(String, Found)>, groups: Vec<(String, Found)>, users| ScopeFacts {
                containers,
                groups,
                users,
            };
        for (what, f, status, says) in [
            (
                "a container and 1,240 users",
                facts(vec![ou.clone()], vec![], Ok(1240)),
                Status::Pass,
                "selects 1,240 users",
            ),
            (
                "one user through a security group",
                facts(vec![ou.clone()], vec![sec.clone()], Ok(1)),
                Status::Pass,
                "selects 1 user",
            ),
            (
                "nobody",
                facts(vec![ou.clone()], vec![], Ok(0)),
                Status::Warn,
                "selects no user",
            ),
            (
                "a missing container",
                facts(vec![gone.clone()], vec![], Ok(0)),
                Status::Fail,
                "OU=Gone,DC=example,DC=com does not exist",
            ),
            (
                "a distribution group",
                facts(vec![ou.clone()], vec![dist], Ok(3)),
                Status::Fail,
                "is a distribution group",
            ),
            (
                "a user given as a group",
                facts(vec![ou.clone()], vec![user], Ok(3)),
                Status::Fail,
                "is not a group",
            ),
            (
                "a filter the DC refuses",
                facts(vec![ou.clone()], vec![], Err("invalid filter".into())),
                Status::Fail,
                "refused the scope's search: invalid filter",
            ),
        ] {
            let r = scope_result(&f);
            assert_eq!(r.status, status, "{what}: {r:?}");
            assert!(r.summary.contains(says), "{what}: {}", r.summary);
            if status != Status::Pass {
                assert!(!r.fix.is_empty(), "{what}: a fix");
            }
        }
    }

    /// Whether the service account sees Deleted Objects decides how soon deletions reach the
    /// cloud: never a failure (the reconciliation still finds them), a warning with the grant.
    #[test]
    fn the_deletions_check_says_when_deletions_arrive_and_how_to_make_it_sooner() {
        let domain = "DC=example,DC=com";
        for (seen, status, says) in [
            (Ok(Deletions::Listed), Status::Pass, "with the next export"),
            (
                Ok(Deletions::Dacl(true)),
                Status::Pass,
                "with the next export",
            ),
            (
                Ok(Deletions::Dacl(false)),
                Status::Warn,
                "only by the full reconciliation, once a day",
            ),
            (
                Ok(Deletions::Hidden),
                Status::Warn,
                "sees nothing in Deleted Objects",
            ),
            (
                Err("timed out after 10 s".to_string()),
                Status::Warn,
                "could not be read (timed out after 10 s)",
            ),
        ] {
            let r = deletions_result(&seen, "svc-sync@example.com", domain);
            assert_eq!(r.id, SOURCE_DELETIONS);
            assert_eq!(r.status, status, "{seen:?}");
            assert!(r.summary.contains(says), "{seen:?}: {}", r.summary);
            if status == Status::Warn {
                assert!(
                    r.fix.contains(
                        "dsacls \"CN=Deleted Objects,DC=example,DC=com\" /G \"svc-sync@example.com:LCRP\""
                    ),
                    "{}",
                    r.fix
                );
            }
        }
    }

    /// The first export from AD, decided as the agent decides, against the cloud's names and
    /// links (recorded shapes of Samba's and Windows' objects): created, brought up to date
    /// when linked, refused when a cloud object has the name, never sent when protected,
    /// privileged through nesting (Tier 0, no adminCount: SDProp has not run), built-in or the
    /// agent's own; named protected accounts are sent; objects outside the containers, or not
    /// selected by the scope's groups and filter, are not counted.
    #[test]
    fn the_first_export_from_ad_is_previewed_as_the_agent_decides() {
        use crate::cloud::api::{AdLink, DirectoryEntry, DirectoryResponse};
        use crate::directory::object::Obj;
        let domain = dn("DC=example,DC=com");
        let scope = crate::source_scope::Scope {
            containers: vec![dn("OU=Staff,DC=example,DC=com")],
            named: vec!["ops-admin".into()],
            service_account: Some(vec![200; 16]),
            sync_group: Some(dn("CN=Sync,OU=Staff,DC=example,DC=com")),
            ..Default::default()
        };
        let mut n = 0u8;
        let mut obj = |sam: &str, at: &str, group: bool| {
            n += 1;
            Obj {
                guid: vec![n; 16],
                dn: format!("CN={sam},{at}"),
                parsed: Some(dn(&format!("CN={sam},{at}"))),
                sam: sam.into(),
                is_user: !group,
                is_group: group,
                rid: Some(1100 + u32::from(n)),
                ..Obj::default()
            }
        };
        let staff = "OU=Staff,DC=example,DC=com";
        let ann = obj("ann", staff, false);
        let bob = obj("bob", staff, false);
        let cid = obj("cid", staff, false);
        let adm = Obj {
            protected: Some("it is protected (adminCount=1)".into()),
            ..obj("adm", staff, false)
        };
        let nested = obj("nested", staff, false);
        let ops = Obj {
            protected: Some("it is protected (adminCount=1)".into()),
            ..obj("ops-admin", staff, false)
        };
        let far = obj("far", "CN=Users,DC=example,DC=com", false);
        let svc = Obj {
            guid: vec![200; 16],
            ..obj("svc-sync", staff, false)
        };
        let eng = obj("Eng", staff, true);
        let admins = Obj {
            rid: Some(512),
            critical: true,
            ..obj("Domain Admins", staff, true)
        };
        let sync = obj("Sync", staff, true);
        let managed = Obj {
            marker: Some(format!("{}u-1", crate::directory::object::MARKER_PREFIX)),
            ..obj("managed", staff, false)
        };
        let objs = vec![
            ann.clone(),
            bob,
            cid.clone(),
            adm,
            nested.clone(),
            ops,
            far,
            svc,
            eng,
            admins,
            sync,
            managed,
        ];
        let tier0 = crate::tier0::Tier0::of([(
            nested.guid.clone(),
            "a member of Domain Admins through Ops".to_string(),
        )]);
        let entry = |name: &str, guid: Option<&[u8]>| DirectoryEntry {
            id: format!("u-{name}"),
            name: name.into(),
            links: guid
                .map(|g| AdLink {
                    domain: "DC=example,DC=com".into(),
                    guid: crate::guid::guid_string(g),
                })
                .into_iter()
                .collect(),
            source: if guid.is_some() {
                "ad".into()
            } else {
                String::new()
            },
        };
        let cloud = DirectoryResponse {
            domain: "DC=example,DC=com".into(),
            users: vec![entry("BOB", None), entry("cid", Some(&cid.guid))],
            groups: vec![],
            truncated: false,
        };
        let (users, groups) = from_ad(&objs, None, &tier0, &scope, &cloud, &domain);
        let (summary, detail, refused) = from_ad_words(&users, &groups);
        assert!(refused);
        assert_eq!(
            summary,
            "first export from AD: users: 2 to create, 1 to update, 1 refused (the name is taken); groups: 1 to create, 0 to update, 0 refused (the name is taken)"
        );
        assert!(detail.iter().any(|l| l.contains("`bob`")), "{detail:?}");
        assert!(
            detail
                .iter()
                .any(|l| l.starts_with("users in the scope never sent: `adm`")),
            "{detail:?}"
        );
        assert_eq!(
            (users.create, users.update),
            (2, 1),
            "ann and ops-admin; cid"
        );
        assert_eq!(users.taken.len(), 1);
        assert_eq!(users.taken[0].0, "bob");
        let never: Vec<(&str, &str)> = users
            .never
            .iter()
            .map(|(n, w)| (n.as_str(), w.as_str()))
            .collect();
        assert_eq!(
            never,
            [
                (
                    "adm",
                    "it is protected (adminCount=1); name it in the scope one by one to export it"
                ),
                (
                    "nested",
                    "it is privileged: a member of Domain Admins through Ops; name it in the scope one by one to export it"
                ),
                ("svc-sync", "the agent's own service account"),
            ]
        );
        assert_eq!(groups.create, 1, "Eng");
        let never: Vec<&str> = groups.never.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(never, ["Domain Admins", "Sync"]);
        // The scope's groups and filter select users: Ann not selected is not counted.
        let selected: std::collections::HashSet<Vec<u8>> = [cid.guid.clone()].into();
        let (users, groups) = from_ad(&objs, Some(&selected), &tier0, &scope, &cloud, &domain);
        assert_eq!((users.create, users.update), (0, 1), "{users:?}");
        assert_eq!(
            groups.create, 1,
            "groups are chosen by the containers alone"
        );
        assert!(users.taken.is_empty(), "bob is not selected: {users:?}");
        assert!(!from_ad_words(&users, &groups).2);
    }

    #[test]
    fn the_mapping_check_finds_unknown_and_confidential_attributes() {
        let row = |key: &str, attribute: &str, flags: Option<i64>| MappedAttr {
            key: key.into(),
            attribute: attribute.into(),
            search_flags: flags,
        };
        let ok = [
            row("[mapping.user] title", "title", Some(0)),
            row("[mapping.user] email", "mail", Some(5)),
        ];
        assert_eq!(mapping_result(&ok).status, Status::Pass);
        let typo = [ok[0].clone(), row("[mapping.user] title", "titel", None)];
        let r = mapping_result(&typo);
        assert_eq!(r.status, Status::Fail);
        assert!(
            r.summary
                .contains("[mapping.user] title reads titel, which AD's schema does not have"),
            "{}",
            r.summary
        );
        let secret = [row(
            "[mapping.user] employee_id",
            "employeeNumber",
            Some(0x80 | 1),
        )];
        let r = mapping_result(&secret);
        assert_eq!(r.status, Status::Warn);
        assert!(r.summary.contains("confidential"), "{}", r.summary);
    }

    /// The count's filter: the DC evaluates the groups' nesting and the administrator's
    /// filter; a group DN's special characters are escaped.
    #[test]
    fn the_count_filter_asks_the_dc_for_nesting_and_the_filter() {
        let scope = crate::source_scope::Scope {
            containers: vec![dn("OU=Staff,DC=example,DC=com")],
            groups: vec![dn("CN=Sales (EU),DC=example,DC=com")],
            filter: Some("(department=*)".into()),
            ..Default::default()
        };
        assert_eq!(
            users_filter(&scope),
            r"(&(objectCategory=person)(objectClass=user)(|(memberOf:1.2.840.113556.1.4.1941:=CN=Sales \28EU\29,DC=example,DC=com))(department=*))"
        );
        let plain = crate::source_scope::Scope {
            containers: scope.containers.clone(),
            ..Default::default()
        };
        assert_eq!(
            users_filter(&plain),
            "(&(objectCategory=person)(objectClass=user))"
        );
    }
}
