//! `source.scope` and `mapping.attributes`: AD as a source's scope and attribute map, checked
//! against the live DC as the service account before anything is written. Reported only when
//! `[sync] direction` has AD as a source (`ad-to-cloud`, `both`).
//!
//! The I/O here reads: each scope container and group by DN, the users the scope selects (a
//! paged count, objectGUID only, with the groups' nesting and the filter evaluated by the DC),
//! and each mapped attribute's `attributeSchema` entry. `scope_result` and `mapping_result` are
//! the pure decisions, table-tested.

use super::CheckResult;
use super::ids::{MAPPING_ATTRIBUTES, SOURCE_SCOPE};
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

/// Both checks against the DC; empty when AD is not a source.
pub async fn run(answers: &Answers) -> Vec<CheckResult> {
    if !answers.sync.direction.from_ad() {
        return Vec::new();
    }
    match look(answers).await {
        Ok((scope, mapping)) => vec![scope_result(&scope), mapping_result(&mapping)],
        Err(why) => vec![
            CheckResult::skip(SOURCE_SCOPE, why.clone()),
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

async fn look(answers: &Answers) -> Result<(ScopeFacts, Vec<MappedAttr>), String> {
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
        Ok::<_, String>((facts, attrs))
    }
    .await;
    session.close().await;
    looked
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
    Ok(seen.len())
}

#[cfg(test)]
mod tests {
    use super::*;
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
