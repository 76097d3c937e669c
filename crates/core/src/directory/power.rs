//! The reads behind `tier0::Tier0`: the security descriptors of the objects that control the
//! domain (and of the group policies linked to them), the accounts and groups holding power
//! over them, and every member of those groups at any depth. Decides nothing; what it could
//! not read is recorded as such, and the decision (`Tier0::compute`) fails closed on it.

use super::object::{
    binary, escape_binary, extended_dn_control, guid_filter, parse_extended_sid, read_base,
    search_paged, text,
};
use super::sd::{SD_FLAGS_OID, SD_FLAGS_OWNER_DACL};
use super::session::OpError;
use super::sid;
use crate::tier0::{Descriptor, PRIVILEGED_NAMES, Principal, Recorded, Target, privileged_sids};
use ldap3::controls::RawControl;
use ldap3::{Ldap, Scope, SearchEntry};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Where to look: the domain and the agent's containers, and the service account's filter.
pub struct Targets<'a> {
    pub domain_dn: &'a str,
    pub root: &'a str,
    pub sync_group_container: Option<&'a str>,
    /// An LDAP filter finding the service account (`AccountName::search_filter`).
    pub service_account_filter: Option<&'a str>,
}

const PRINCIPAL_ATTRS: &[&str] = &["objectGUID", "objectSid", "objectClass", "sAMAccountName"];

fn sd_flags_control() -> RawControl {
    RawControl {
        ctype: SD_FLAGS_OID.to_string(),
        crit: false,
        val: Some(SD_FLAGS_OWNER_DACL.to_vec()),
    }
}

/// What `read_sd` reads of one object.
struct Read {
    sd: Result<Vec<u8>, String>,
    gplink: Option<String>,
    /// Its objectSid (the domain head's is the domain's SID).
    sid: Option<String>,
}

impl Read {
    fn failed(why: &str) -> Read {
        Read {
            sd: Err(why.to_string()),
            gplink: None,
            sid: None,
        }
    }
}

/// One object's owner and DACL (with the SD flags control), its gPLink and its objectSid, in
/// one request.
async fn read_sd(ldap: &Ldap, timeout: Duration, dn: &str) -> Result<Read, OpError> {
    let mut l = ldap.clone();
    let r = l
        .with_controls(vec![extended_dn_control(), sd_flags_control()])
        .with_timeout(timeout)
        .search(
            dn,
            Scope::Base,
            "(objectClass=*)",
            vec!["nTSecurityDescriptor", "gPLink", "objectSid"],
        )
        .await
        .and_then(|r| r.success());
    match r {
        Ok((mut entries, _)) => match entries.pop().map(SearchEntry::construct) {
            Some(e) => Ok(Read {
                sd: binary(&e, "nTSecurityDescriptor").ok_or_else(|| {
                    "AD returned no nTSecurityDescriptor: the service account may not read its permissions"
                        .to_string()
                }),
                gplink: text(&e, "gPLink"),
                sid: binary(&e, "objectSid").and_then(|b| sid::to_string(&b)),
            }),
            None => Ok(Read::failed("it is not visible to the service account")),
        },
        Err(e) => {
            let e = OpError::from_ldap(e, timeout);
            match e.rc() {
                Some(32) => Ok(Read::failed("it does not exist")),
                Some(rc) if !matches!(rc, 51 | 52 | 80 | 81) => Ok(Read::failed(&e.to_string())),
                _ => Err(e),
            }
        }
    }
}

/// The group policies a gPLink value links: `[LDAP://cn={GUID},cn=policies,...;0][...]`.
pub fn gp_links(value: &str) -> Vec<String> {
    value
        .split('[')
        .filter_map(|part| {
            let part = part.trim_end_matches(']');
            let (link, _options) = part.rsplit_once(';')?;
            let dn = link
                .strip_prefix("LDAP://")
                .or_else(|| link.strip_prefix("ldap://"))?;
            (!dn.is_empty()).then(|| dn.to_string())
        })
        .collect()
}

fn principal(e: &SearchEntry) -> Principal {
    let classes: Vec<&String> = e
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("objectClass"))
        .map(|(_, v)| v.iter().collect())
        .unwrap_or_default();
    let (_, _, dn) = parse_extended_sid(&e.dn);
    Principal {
        guid: binary(e, "objectGUID").unwrap_or_default(),
        sid: binary(e, "objectSid").and_then(|b| sid::to_string(&b)),
        dn,
        sam: text(e, "sAMAccountName").unwrap_or_default(),
        is_group: classes.iter().any(|c| c.eq_ignore_ascii_case("group")),
    }
}

/// A group's `member`, every range of it (AD hands out at most MaxValRange values, 1,500 by
/// default, per read): the members' objectGUIDs and SIDs from the extended DN form.
pub(crate) async fn members(
    ldap: &Ldap,
    timeout: Duration,
    dn: &str,
) -> Result<Result<Vec<(Vec<u8>, Option<String>, String)>, String>, OpError> {
    let mut out = Vec::new();
    let mut low = 0usize;
    loop {
        let attr = format!("member;range={low}-*");
        let entry = match read_base(ldap, timeout, dn, &[attr.as_str()]).await {
            Ok(Some(e)) => e,
            Ok(None) => return Ok(Err("the group is not visible to the service account".into())),
            Err(e) => match e.rc() {
                Some(rc) if !matches!(rc, 51 | 52 | 80 | 81) => return Ok(Err(e.to_string())),
                _ => return Err(e),
            },
        };
        // Either plain `member` (all of it) or `member;range=L-H` (H `*` on the last range).
        let Some((name, values)) = entry.attrs.iter().find(|(k, _)| {
            let k = k.to_ascii_lowercase();
            k == "member" || k.starts_with("member;range=")
        }) else {
            return Ok(Ok(out));
        };
        for v in values {
            let (guid, sid, dn) = parse_extended_sid(v);
            match guid {
                Some(g) => out.push((g, sid, dn)),
                None => return Ok(Err(format!("a member without its objectGUID ({dn})"))),
            }
        }
        let high = name
            .to_ascii_lowercase()
            .split_once(";range=")
            .and_then(|(_, r)| r.split_once('-').map(|(_, h)| h.to_string()));
        match high.as_deref() {
            None | Some("*") => return Ok(Ok(out)),
            Some(h) => match h.parse::<usize>() {
                Ok(h) if h + 1 > low => low = h + 1,
                _ => return Ok(Err(format!("an unreadable range of members ({name})"))),
            },
        }
    }
}

/// Everything `Tier0::compute` decides from.
pub async fn record(ldap: &Ldap, timeout: Duration, t: &Targets<'_>) -> Result<Recorded, OpError> {
    let mut rec = Recorded::default();
    // The descriptors, and the group policies linked to them.
    let mut wanted = vec![
        (Target::DomainHead, t.domain_dn.to_string()),
        (
            Target::AdminSdHolder,
            format!("CN=AdminSDHolder,CN=System,{}", t.domain_dn),
        ),
        (
            Target::DomainControllers,
            format!("OU=Domain Controllers,{}", t.domain_dn),
        ),
        (Target::RootContainer, t.root.to_string()),
    ];
    if let Some(c) = t.sync_group_container {
        wanted.push((Target::SyncGroupContainer, c.to_string()));
    }
    let mut seen: HashSet<String> = HashSet::new();
    let mut gpos = Vec::new();
    for (target, dn) in wanted {
        if !seen.insert(dn.to_lowercase()) {
            continue;
        }
        let read = read_sd(ldap, timeout, &dn).await?;
        gpos.extend(read.gplink.as_deref().map(gp_links).unwrap_or_default());
        if target == Target::DomainHead {
            rec.domain_sid = read.sid;
        }
        rec.descriptors.push(Descriptor {
            target,
            dn,
            sd: read.sd,
        });
    }
    for dn in gpos {
        if !seen.insert(dn.to_lowercase()) {
            continue;
        }
        let read = read_sd(ldap, timeout, &dn).await?;
        rec.descriptors.push(Descriptor {
            target: Target::Gpo,
            dn,
            sd: read.sd,
        });
    }

    // The principals to start from: the trustees, the privileged groups, the service account.
    let mut sids: Vec<String> = rec.trustees().into_iter().map(|(s, _)| s).collect();
    sids.extend(privileged_sids(rec.domain_sid.as_deref()));
    let mut terms: Vec<String> = sids
        .iter()
        .filter(|s| !super::sd::is_everyone(s, rec.domain_sid.as_deref()))
        .filter_map(|s| sid::to_bytes(s))
        .map(|b| format!("(objectSid={})", escape_binary(&b)))
        .collect();
    terms.extend(
        PRIVILEGED_NAMES
            .iter()
            .map(|n| super::object::eq("sAMAccountName", n)),
    );
    for chunk in terms.chunks(100) {
        let filter = format!("(|{})", chunk.concat());
        for e in search_paged(ldap, timeout, t.domain_dn, &filter, PRINCIPAL_ATTRS).await? {
            let p = principal(&e);
            rec.principals.insert(p.guid.clone(), p);
        }
    }
    if let Some(f) = t.service_account_filter {
        let found = search_paged(ldap, timeout, t.domain_dn, f, PRINCIPAL_ATTRS).await?;
        if let [one] = found.as_slice() {
            let p = principal(one);
            rec.service_account = Some(p.guid.clone());
            rec.principals.entry(p.guid.clone()).or_insert(p);
        }
    }

    // Every group met, expanded: its `member` (all ranges); the members not met before are
    // looked up by objectGUID to learn which are groups.
    let mut expanded: HashSet<Vec<u8>> = HashSet::new();
    loop {
        let groups: Vec<(Vec<u8>, String)> = rec
            .principals
            .values()
            .filter(|p| p.is_group && !expanded.contains(&p.guid))
            .map(|p| (p.guid.clone(), p.dn.clone()))
            .collect();
        if groups.is_empty() {
            break;
        }
        let mut unknown: Vec<(Vec<u8>, Option<String>, String)> = Vec::new();
        for (guid, dn) in groups {
            expanded.insert(guid.clone());
            match members(ldap, timeout, &dn).await? {
                Ok(list) => {
                    let guids = list.iter().map(|(g, _, _)| g.clone()).collect();
                    for m in list {
                        if !rec.principals.contains_key(&m.0) && !unknown.iter().any(|u| u.0 == m.0)
                        {
                            unknown.push(m);
                        }
                    }
                    rec.members.insert(guid, Ok(guids));
                }
                Err(why) => {
                    rec.members.insert(guid, Err(why));
                }
            }
        }
        let mut found: HashMap<Vec<u8>, Principal> = HashMap::new();
        let guids: Vec<Vec<u8>> = unknown.iter().map(|u| u.0.clone()).collect();
        for chunk in guids.chunks(100) {
            let filter = format!(
                "(|{})",
                chunk.iter().map(|g| guid_filter(g)).collect::<String>()
            );
            for e in search_paged(ldap, timeout, t.domain_dn, &filter, PRINCIPAL_ATTRS).await? {
                let p = principal(&e);
                found.insert(p.guid.clone(), p);
            }
        }
        for (guid, sid, dn) in unknown {
            // A member not found in the domain (of another domain of the forest, or not
            // visible) is recorded with what its DN said; it cannot be expanded.
            let p = found.remove(&guid).unwrap_or(Principal {
                guid: guid.clone(),
                sid,
                dn,
                sam: String::new(),
                is_group: false,
            });
            rec.principals.insert(guid, p);
        }
    }

    // Accounts whose primary group is one of the groups (not in `member`): one search for all.
    let domain_sid = rec.domain_sid.clone();
    let by_rid: HashMap<u32, Vec<u8>> = rec
        .principals
        .values()
        .filter(|p| p.is_group)
        .filter_map(|p| {
            let (d, rid) = sid::split_rid(p.sid.as_deref()?)?;
            (Some(d) == domain_sid.as_deref() && !matches!(rid, 513..=515))
                .then(|| (rid, p.guid.clone()))
        })
        .collect();
    if !by_rid.is_empty() {
        let filter = format!(
            "(|{})",
            by_rid
                .keys()
                .map(|r| format!("(primaryGroupID={r})"))
                .collect::<String>()
        );
        let mut attrs = PRINCIPAL_ATTRS.to_vec();
        attrs.push("primaryGroupID");
        for e in search_paged(ldap, timeout, t.domain_dn, &filter, &attrs).await? {
            let p = principal(&e);
            let Some(group) = text(&e, "primaryGroupID")
                .and_then(|r| r.parse::<u32>().ok())
                .and_then(|r| by_rid.get(&r))
            else {
                continue;
            };
            if let Some(Ok(list)) = rec.members.get_mut(group)
                && !list.contains(&p.guid)
            {
                list.push(p.guid.clone());
            }
            rec.principals.entry(p.guid.clone()).or_insert(p);
        }
    }
    Ok(rec)
}

/// The decision for the agent's scope, bound as `account`: `record`, then `Tier0::compute`.
pub async fn tier0(
    ldap: &Ldap,
    timeout: Duration,
    scope: &crate::adopt::Scope,
    account: Option<&super::bind::AccountName>,
) -> Result<crate::tier0::Tier0, OpError> {
    let domain_dn = scope
        .domain_dn()
        .map(|d| d.to_comma_form())
        .unwrap_or_default();
    let root = scope.root_text();
    let container = scope.group_parent().map(|d| d.to_comma_form());
    let filter = account.map(|a| a.search_filter());
    let rec = record(
        ldap,
        timeout,
        &Targets {
            domain_dn: &domain_dn,
            root: &root,
            sync_group_container: container.as_deref(),
            service_account_filter: filter.as_deref(),
        },
    )
    .await?;
    Ok(crate::tier0::Tier0::compute(&rec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gp_links_are_read_from_the_attribute() {
        let v = "[LDAP://cn={31B2F340-016D-11D2-945F-00C04FB984F9},cn=policies,cn=system,DC=example,DC=com;0][LDAP://cn={6AC1786C-016F-11D2-945F-00C04fB984F9},cn=policies,cn=system,DC=example,DC=com;1]";
        assert_eq!(
            gp_links(v),
            vec![
                "cn={31B2F340-016D-11D2-945F-00C04FB984F9},cn=policies,cn=system,DC=example,DC=com",
                "cn={6AC1786C-016F-11D2-945F-00C04fB984F9},cn=policies,cn=system,DC=example,DC=com",
            ]
        );
        assert!(gp_links("").is_empty());
        assert!(gp_links(" ").is_empty());
    }
}
