//! AD objects as the agent, the preview and the import read them: one search entry (asked for
//! with the extended-DN control, so every DN value carries its objectGUID and SID) turned into
//! an `Obj`, with why it must never be written when it must not; and paged searches that read
//! a whole container however large it is.

use super::session::OpError;
use crate::dn::Dn;
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::controls::RawControl;
use ldap3::{Ldap, Scope, SearchEntry};
use std::collections::HashSet;
use std::time::Duration;

/// What the agent writes in `adminDescription` of the objects it manages, before the cloud id.
pub const MARKER_PREFIX: &str = "ad-sync:";
/// LDAP_SERVER_EXTENDED_DN_OID: DN values come back as `<GUID=..>;<SID=..>;CN=...`.
pub const EXTENDED_DN: &str = "1.2.840.113556.1.4.529";
pub const UAC_DISABLED: i64 = 0x2;
pub const UAC_NORMAL: i64 = 0x200;
/// Global security group.
pub const GROUP_TYPE_GLOBAL_SECURITY: &str = "-2147483646";
/// groupType's bit for a security group (without it: a distribution group).
const GROUP_TYPE_SECURITY: i64 = 0x8000_0000;
/// UAC bits of accounts that act for others or for machines: a DC (SERVER_TRUST), a
/// workstation, a trust between domains, and the two kinds of delegation.
pub const UAC_POWER_BITS: &[(i64, &str)] = &[
    (0x0000_0800, "it is an interdomain trust account"),
    (0x0000_1000, "it is a computer account"),
    (0x0000_2000, "it is a domain controller's account"),
    (0x0008_0000, "it is trusted for delegation (unconstrained)"),
    (0x0100_0000, "it is trusted to authenticate for delegation"),
];

/// Whether a RID is one of a privileged group (domain or built-in, `tier0`'s lists).
pub fn privileged_rid(rid: u32) -> bool {
    crate::tier0::PRIVILEGED_DOMAIN_RIDS.contains(&rid)
        || crate::tier0::PRIVILEGED_BUILTIN_RIDS.contains(&rid)
}

/// Entries per page of a paged search (AD's MaxPageSize is 1,000 by default).
const PAGE: i32 = 1000;

/// The attributes `object` reads.
pub const ATTRS: &[&str] = &[
    "objectGUID",
    "objectSid",
    "objectClass",
    "sAMAccountName",
    "adminDescription",
    "userAccountControl",
    "lockoutTime",
    "adminCount",
    "isCriticalSystemObject",
    "givenName",
    "sn",
    "displayName",
    "mail",
    "userPrincipalName",
    "memberOf",
    "groupType",
    "primaryGroupID",
    "pwdLastSet",
    "msDS-AllowedToDelegateTo",
    // Last, so that `ATTRS_BUT_MEMBERS` is the rest.
    "member",
];

/// `ATTRS` without a group's `member` list, which can hold the whole directory (a test holds
/// `ATTRS` to ending with it).
pub const ATTRS_BUT_MEMBERS: &[&str] = match ATTRS.split_last() {
    Some((_, rest)) => rest,
    None => ATTRS,
};

/// What the adoption rules need of an object (the preview's read of the whole domain): no
/// names, no group members.
pub const CLASSIFY_ATTRS: &[&str] = &[
    "objectGUID",
    "objectSid",
    "objectClass",
    "sAMAccountName",
    "adminDescription",
    "userAccountControl",
    "adminCount",
    "isCriticalSystemObject",
    "memberOf",
    "groupType",
    "primaryGroupID",
    "msDS-AllowedToDelegateTo",
];

/// The names the import sends besides what the rules need.
const NAME_ATTRS: &[&str] = &["givenName", "sn", "displayName", "mail"];

/// The import's read: the rules' attributes and the names it sends; a group's members come
/// from the members' memberOf.
pub fn import_attrs() -> Vec<&'static str> {
    [CLASSIFY_ATTRS, NAME_ATTRS].concat()
}

/// The user accounts and groups of a container (what the preview and the import read).
pub const PEOPLE_FILTER: &str =
    "(|(&(objectCategory=person)(objectClass=user))(objectClass=group))";

/// One AD object as the agent reads it.
#[derive(Debug, Clone, Default)]
pub struct Obj {
    pub guid: Vec<u8>,
    pub dn: String,
    pub parsed: Option<Dn>,
    pub sam: String,
    pub marker: Option<String>,
    pub is_group: bool,
    /// A user account (not a group, computer, contact or anything else).
    pub is_user: bool,
    /// A contact (a person with an e-mail address and no account).
    pub is_contact: bool,
    /// A group whose groupType has the security bit (false for a distribution group).
    pub security: bool,
    pub uac: i64,
    pub lockout_time: i64,
    /// 0: no password was ever set (or one must be set at next logon).
    pub pwd_last_set: i64,
    pub given: Option<String>,
    pub sn: Option<String>,
    pub display: Option<String>,
    pub mail: Option<String>,
    pub upn: Option<String>,
    /// Direct members: (objectGUID, DN).
    pub members: Vec<(Vec<u8>, String)>,
    /// AD sent `member` in ranges (Windows past its MaxValRange, 1,500 values): where the next
    /// range starts (`rest_of_members` reads it). `None`: `members` is all of it.
    pub members_next: Option<u32>,
    /// Groups it is directly in: (objectGUID, DN).
    pub member_of: Vec<(Vec<u8>, String)>,
    /// AD sent `memberOf` in ranges (`memberOf;range=0-1499`, past its MaxValRange), so
    /// `member_of` is not all of it.
    pub member_of_partial: bool,
    /// Why the agent must not touch it, when it must not.
    pub protected: Option<String>,
    /// The relative identifier of its objectSid (none for a contact).
    pub rid: Option<u32>,
    /// isCriticalSystemObject is TRUE (a built-in object).
    pub critical: bool,
}

impl Obj {
    pub fn marker_id(&self) -> Option<&str> {
        self.marker
            .as_deref()
            .and_then(|m| m.strip_prefix(MARKER_PREFIX))
    }

    pub fn enabled(&self) -> bool {
        self.uac & UAC_DISABLED == 0
    }
}

pub(super) fn text(e: &SearchEntry, attr: &str) -> Option<String> {
    e.attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .and_then(|(_, v)| v.first().cloned())
}

fn texts(e: &SearchEntry, attr: &str) -> Vec<String> {
    e.attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// A group's `member` values in the entry, and where the next range starts when AD sent them
/// in ranges: `member;range=0-1499` (more follow from 1500) or `member;range=1500-*` (the last).
pub fn member_values(e: &SearchEntry) -> (Vec<String>, Option<u32>) {
    for (k, v) in &e.attrs {
        let lower = k.to_ascii_lowercase();
        if lower == "member" {
            return (v.clone(), None);
        }
        if let Some(range) = lower.strip_prefix("member;range=") {
            let next = range
                .split_once('-')
                .and_then(|(_, end)| end.parse::<u32>().ok())
                .map(|end| end.saturating_add(1));
            return (v.clone(), next);
        }
    }
    (Vec::new(), None)
}

pub(super) fn binary(e: &SearchEntry, attr: &str) -> Option<Vec<u8>> {
    e.bin_attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .and_then(|(_, v)| v.first().cloned())
        .or_else(|| text(e, attr).map(String::into_bytes))
}

#[cfg(test)]
use ad_sync_api::guid::hex;
use ad_sync_api::guid::unhex;
pub use ad_sync_api::guid::{guid_string, normalize_guid_string, parse_guid_string};

/// Reads `<GUID=hex>;<SID=hex>;CN=...` (the extended DN form): the GUID, the SID's RID and
/// the plain DN.
fn parse_extended(value: &str) -> (Option<Vec<u8>>, Option<u32>, String) {
    let (guid, sid, dn) = parse_extended_sid(value);
    let rid = sid.and_then(|s| super::sid::split_rid(&s).map(|(_, r)| r));
    (guid, rid, dn)
}

/// The extended DN form's GUID, SID (`S-1-...`) and plain DN.
pub fn parse_extended_sid(value: &str) -> (Option<Vec<u8>>, Option<String>, String) {
    let mut guid = None;
    let mut sid = None;
    let mut rest = value;
    while let Some(stripped) = rest.strip_prefix('<') {
        let Some(end) = stripped.find('>') else { break };
        let part = &stripped[..end];
        if let Some(g) = part.strip_prefix("GUID=") {
            guid = if g.contains('-') {
                parse_guid_string(g)
            } else {
                unhex(g)
            };
        } else if let Some(s) = part.strip_prefix("SID=") {
            sid = unhex(s)
                .and_then(|b| super::sid::to_string(&b))
                .or_else(|| s.starts_with("S-").then(|| s.to_string()));
        }
        rest = &stripped[end + 1..];
        rest = rest.strip_prefix(';').unwrap_or(rest);
    }
    (guid, sid, rest.to_string())
}

pub(super) fn escape_binary(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// A filter term matching one attribute value exactly.
pub fn eq(attr: &str, value: &str) -> String {
    format!("({attr}={})", ldap3::ldap_escape(value))
}

pub fn guid_filter(guid: &[u8]) -> String {
    format!("(objectGUID={})", escape_binary(guid))
}

/// One search entry (asked for with the extended-DN control) as the agent reads it, with why
/// it must not be touched when it must not: adminCount=1, a critical system object, a built-in
/// RID (below 1000), or membership of a privileged group, direct or as its primary group.
/// Nested membership is not in the entry: `privileged_members` finds it.
pub fn object(e: &SearchEntry) -> Obj {
    let (_, own_rid, dn) = parse_extended(&e.dn);
    let classes = texts(e, "objectClass");
    let has_class = |c: &str| classes.iter().any(|x| x.eq_ignore_ascii_case(c));
    let is_group = has_class("group");
    let is_user = has_class("user") && !has_class("computer");
    let is_contact = has_class("contact");
    let (member_values, members_next) = member_values(e);
    let members = member_values
        .iter()
        .filter_map(|v| {
            let (g, _, dn) = parse_extended(v);
            g.map(|g| (g, dn))
        })
        .collect();
    let mut privileged_group = None;
    let member_of = texts(e, "memberOf")
        .iter()
        .filter_map(|v| {
            let (g, rid, dn) = parse_extended(v);
            if rid.is_some_and(privileged_rid) {
                privileged_group = Some(dn.clone());
            }
            g.map(|g| (g, dn))
        })
        .collect();
    let rid = own_rid.or_else(|| {
        binary(e, "objectSid")
            .and_then(|b| super::sid::to_string(&b))
            .and_then(|s| super::sid::split_rid(&s).map(|(_, r)| r))
    });
    let primary = text(e, "primaryGroupID").and_then(|v| v.parse::<u32>().ok());
    let int = |attr: &str| text(e, attr).and_then(|v| v.parse::<i64>().ok());
    let uac = int("userAccountControl").unwrap_or(0);
    let sam = text(e, "sAMAccountName").unwrap_or_default();
    let protected = if text(e, "adminCount").as_deref() == Some("1") {
        Some("it is protected (adminCount=1: it is or was in an administrative group)".to_string())
    } else if text(e, "isCriticalSystemObject").is_some_and(|v| v.eq_ignore_ascii_case("TRUE")) {
        Some("it is a critical system object".to_string())
    } else if let Some(n) = crate::tier0::PRIVILEGED_NAMES
        .iter()
        .find(|n| sam.eq_ignore_ascii_case(n))
    {
        Some(format!(
            "it is {n}, a privileged group (its members can take over the domain controllers or the domain)"
        ))
    } else if rid.is_some_and(|r| r < 1000) {
        Some("it is a built-in account or group".to_string())
    } else if let Some(g) = privileged_group {
        Some(format!("it is a member of the privileged group {g}"))
    } else if let Some(r) = primary.filter(|r| privileged_rid(*r)) {
        Some(format!("its primary group is a privileged group (RID {r})"))
    } else if let Some((_, why)) = UAC_POWER_BITS.iter().find(|(bit, _)| uac & bit != 0) {
        Some(why.to_string())
    } else if sam.ends_with('$') {
        Some("its name ends in $ (a computer or trust account)".to_string())
    } else if text(e, "msDS-AllowedToDelegateTo").is_some() {
        Some("it may act for other accounts (msDS-AllowedToDelegateTo is set)".to_string())
    } else {
        None
    };
    Obj {
        guid: binary(e, "objectGUID").unwrap_or_default(),
        parsed: Dn::parse(&dn).ok().map(|p| p.dn),
        dn,
        sam,
        marker: text(e, "adminDescription"),
        is_group,
        is_user,
        is_contact,
        security: int("groupType").is_some_and(|t| t & GROUP_TYPE_SECURITY != 0),
        uac,
        lockout_time: int("lockoutTime").unwrap_or(0),
        pwd_last_set: int("pwdLastSet").unwrap_or(0),
        given: text(e, "givenName"),
        sn: text(e, "sn"),
        display: text(e, "displayName"),
        mail: text(e, "mail"),
        upn: text(e, "userPrincipalName"),
        members,
        members_next,
        member_of,
        member_of_partial: e
            .attrs
            .keys()
            .any(|k| k.to_ascii_lowercase().starts_with("memberof;range=")),
        protected,
        rid,
        critical: text(e, "isCriticalSystemObject").is_some_and(|v| v.eq_ignore_ascii_case("TRUE")),
    }
}

/// The extended-DN control (no value: GUIDs and SIDs in hex), on every read here.
pub fn extended_dn_control() -> RawControl {
    RawControl {
        ctype: EXTENDED_DN.to_string(),
        crit: false,
        val: None,
    }
}

/// One search request (no paging) with the extended-DN control, within `timeout`.
pub async fn search(
    ldap: &Ldap,
    timeout: Duration,
    base: &str,
    scope: Scope,
    filter: &str,
    attrs: &[&str],
) -> Result<Vec<SearchEntry>, OpError> {
    let mut ldap = ldap.clone();
    let (entries, _) = ldap
        .with_controls(vec![extended_dn_control()])
        .with_timeout(timeout)
        .search(base, scope, filter, attrs.to_vec())
        .await
        .and_then(|r| r.success())
        .map_err(|e| OpError::from_ldap(e, timeout))?;
    Ok(entries.into_iter().map(SearchEntry::construct).collect())
}

/// Every entry under `base` matching `filter`, read in pages of 1,000 (so no server size limit
/// cuts it short), with DN values in the extended form; each page within `timeout`.
pub async fn search_paged(
    ldap: &Ldap,
    timeout: Duration,
    base: &str,
    filter: &str,
    attrs: &[&str],
) -> Result<Vec<SearchEntry>, OpError> {
    let mut pages = search_pages(ldap, timeout, base, filter, attrs).await?;
    let mut out = Vec::new();
    while let Some(page) = pages.next_page().await? {
        out.extend(page);
    }
    Ok(out)
}

/// A paged subtree search handed out a page (1,000 entries) at a time, so a reader of a large
/// directory holds one page, not the directory.
pub struct PagedSearch {
    stream: ldap3::SearchStream<'static, String, Vec<String>>,
    timeout: Duration,
    done: bool,
}

/// Starts a paged search under `base` (as `search_paged`, page by page: `PagedSearch`).
pub async fn search_pages(
    ldap: &Ldap,
    timeout: Duration,
    base: &str,
    filter: &str,
    attrs: &[&str],
) -> Result<PagedSearch, OpError> {
    search_pages_with(
        ldap,
        timeout,
        base,
        filter,
        attrs,
        vec![extended_dn_control()],
    )
    .await
}

/// [`search_pages`] with these request controls instead of the extended-DN one.
pub async fn search_pages_with(
    ldap: &Ldap,
    timeout: Duration,
    base: &str,
    filter: &str,
    attrs: &[&str],
    controls: Vec<ldap3::controls::RawControl>,
) -> Result<PagedSearch, OpError> {
    let mut ldap = ldap.clone();
    let adapters: Vec<Box<dyn Adapter<'static, String, Vec<String>>>> = vec![
        Box::new(EntriesOnly::new()),
        Box::new(PagedResults::new(PAGE)),
    ];
    let attrs: Vec<String> = attrs.iter().map(|a| a.to_string()).collect();
    let stream = ldap
        .with_controls(controls)
        .with_timeout(timeout)
        .streaming_search_with(adapters, base, Scope::Subtree, filter, attrs)
        .await
        .map_err(|e| OpError::from_ldap(e, timeout))?;
    Ok(PagedSearch {
        stream,
        timeout,
        done: false,
    })
}

impl PagedSearch {
    /// The next page, `None` after the last; the search's final result is checked after it
    /// (a search cut short by the server is an error, never a short answer).
    pub async fn next_page(&mut self) -> Result<Option<Vec<SearchEntry>>, OpError> {
        let timeout = self.timeout;
        let err = |e| OpError::from_ldap(e, timeout);
        let mut out = Vec::new();
        while !self.done && out.len() < PAGE as usize {
            match tokio::time::timeout(timeout, self.stream.next()).await {
                Ok(Ok(Some(entry))) => out.push(SearchEntry::construct(entry)),
                Ok(Ok(None)) => {
                    self.done = true;
                    self.stream.finish().await.success().map_err(err)?;
                }
                Ok(Err(e)) => return Err(err(e)),
                Err(_) => return Err(OpError::Timeout(timeout)),
            }
        }
        Ok((!out.is_empty()).then_some(out))
    }
}

/// The objectGUIDs of every member of the groups `start` (DNs), nested membership included
/// (`member` read in all its ranges).
pub async fn nested_members(
    ldap: &Ldap,
    timeout: Duration,
    domain_dn: &str,
    start: Vec<String>,
) -> Result<HashSet<Vec<u8>>, OpError> {
    let mut level = start;
    let mut seen_groups: HashSet<String> = level.iter().map(|d| d.to_lowercase()).collect();
    let mut members = HashSet::new();
    while !level.is_empty() {
        // Each group's `member`, read by DN (a base read; with the extended-DN control every
        // value carries its objectGUID).
        let mut found = Vec::new();
        for dn in &level {
            // Every range of it (AD hands out 1,500 values a read); a group the service
            // account cannot read adds no member.
            if let Ok(list) = super::power::members(ldap, timeout, dn).await? {
                for (g, _, _) in list {
                    if members.insert(g.clone()) {
                        found.push(g);
                    }
                }
            }
        }
        // Which of them are groups: by objectGUID (indexed), 100 per search.
        let mut next = Vec::new();
        for chunk in found.chunks(100) {
            let filter = format!(
                "(&(objectClass=group)(|{}))",
                chunk.iter().map(|g| guid_filter(g)).collect::<String>()
            );
            for e in search_paged(ldap, timeout, domain_dn, &filter, &["objectGUID"]).await? {
                let dn = parse_extended(&e.dn).2;
                if seen_groups.insert(dn.to_lowercase()) {
                    next.push(dn);
                }
            }
        }
        level = next;
    }
    Ok(members)
}

/// Whether a group (the sync group) would hand privilege to what is put in it: why it must
/// never be written, or `None`. It must not be protected itself (`object`'s rules), nor be
/// DnsAdmins, nor be a member, at any depth, of a privileged group (the well-known RIDs and
/// DnsAdmins; a group it is in only because that is built in, like Users, is no reason).
/// Walks up through `memberOf`, one base read per group on the way (nesting is shallow; at
/// most `MAX_NESTED_READS` groups are read, and a deeper chain is refused as unproven).
pub async fn group_privilege(
    ldap: &Ldap,
    timeout: Duration,
    dn: &str,
) -> Result<Option<String>, OpError> {
    match read_base(ldap, timeout, dn, ATTRS).await? {
        Some(e) => group_privilege_of(ldap, timeout, &object(&e)).await,
        None => Ok(None),
    }
}

/// `group_privilege` for a group already read (the agent has read the sync group).
pub async fn group_privilege_of(
    ldap: &Ldap,
    timeout: Duration,
    start: &Obj,
) -> Result<Option<String>, OpError> {
    if let Some(why) = &start.protected {
        return Ok(Some(why.clone()));
    }
    let mut seen: HashSet<String> = HashSet::from([start.dn.to_lowercase()]);
    // (group DN, the chain of groups from the start to it)
    let mut queue: Vec<(String, Vec<String>)> = start
        .member_of
        .iter()
        .map(|(_, d)| (d.clone(), vec![d.clone()]))
        .collect();
    let mut reads = 0;
    while let Some((group, chain)) = queue.pop() {
        if !seen.insert(group.to_lowercase()) {
            continue;
        }
        reads += 1;
        if reads > MAX_NESTED_READS {
            return Ok(Some(format!(
                "it is nested in more than {MAX_NESTED_READS} groups, too many to prove none of them is privileged"
            )));
        }
        let via = if chain.len() > 1 {
            format!(" (through {})", chain[..chain.len() - 1].join(" → "))
        } else {
            String::new()
        };
        let Some(e) = read_base(
            ldap,
            timeout,
            &group,
            &["objectSid", "sAMAccountName", "memberOf"],
        )
        .await?
        else {
            continue;
        };
        let o = object(&e);
        let rid = binary(&e, "objectSid")
            .and_then(|b| super::sid::to_string(&b))
            .and_then(|s| super::sid::split_rid(&s).map(|(_, r)| r));
        if rid.is_some_and(privileged_rid)
            || crate::tier0::PRIVILEGED_NAMES
                .iter()
                .any(|n| o.sam.eq_ignore_ascii_case(n))
        {
            return Ok(Some(format!(
                "it is a member of the privileged group {}{via}",
                o.dn
            )));
        }
        for (_, parent) in o.member_of {
            let mut next = chain.clone();
            next.push(parent.clone());
            queue.push((parent, next));
        }
    }
    Ok(None)
}

/// Groups read at most by `group_privilege`.
const MAX_NESTED_READS: usize = 200;

/// One entry by DN with the extended-DN control; `None` when it does not exist.
pub async fn read_base(
    ldap: &Ldap,
    timeout: Duration,
    dn: &str,
    attrs: &[&str],
) -> Result<Option<SearchEntry>, OpError> {
    match search(ldap, timeout, dn, Scope::Base, "(objectClass=*)", attrs).await {
        Ok(mut entries) => Ok(entries.pop()),
        Err(e) if e.rc() == Some(32) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The rest of a group's `member` values from range `start` on, asked `page` at a time
/// (`member;range=START-END`) until AD says the last (`…-*`), with DN values in the extended
/// form. Windows answers a large group's `member` in ranges of its MaxValRange (1,500).
pub async fn rest_of_members(
    ldap: &Ldap,
    timeout: Duration,
    dn: &str,
    mut start: u32,
    page: u32,
) -> Result<Vec<String>, OpError> {
    let mut out = Vec::new();
    loop {
        let attr = format!(
            "member;range={start}-{}",
            start.saturating_add(page.max(1) - 1)
        );
        let Some(e) = read_base(ldap, timeout, dn, &[attr.as_str()]).await? else {
            break;
        };
        let (values, next) = member_values(&e);
        out.extend(values);
        match next {
            // A range that does not move on would ask the same again: stop, with what came.
            Some(n) if n > start => start = n,
            _ => break,
        }
    }
    Ok(out)
}

/// Makes `o.members` whole when AD sent them in ranges (`members_next`), 1,500 a request.
pub async fn complete_members(ldap: &Ldap, timeout: Duration, o: &mut Obj) -> Result<(), OpError> {
    let Some(start) = o.members_next else {
        return Ok(());
    };
    let rest = rest_of_members(ldap, timeout, &o.dn, start, 1500).await?;
    o.members.extend(rest.iter().filter_map(|v| {
        let (g, _, dn) = parse_extended(v);
        g.map(|g| (g, dn))
    }));
    o.members_next = None;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dn: &str, attrs: &[(&str, &str)]) -> SearchEntry {
        SearchEntry {
            dn: dn.into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
                .collect(),
            bin_attrs: Default::default(),
        }
    }

    /// A group's members as Windows and Samba send them: whole, or in ranges past
    /// MaxValRange (recorded shapes of `member;range=…`), in any case.
    #[test]
    fn members_sent_in_ranges_say_where_the_next_range_starts() {
        let m = "<GUID=00112233445566778899aabbccddeeff>;CN=a,DC=example,DC=com";
        for (key, next) in [
            ("member", None),
            ("member;range=0-1499", Some(1500)),
            ("Member;Range=1500-2999", Some(3000)),
            ("member;range=3000-*", None),
            ("member;range=0-*", None),
        ] {
            let e = entry(
                "CN=g,DC=example,DC=com",
                &[("objectClass", "group"), (key, m)],
            );
            let (values, got) = member_values(&e);
            assert_eq!((values.len(), got), (1, next), "{key}");
            let o = object(&e);
            assert_eq!(
                (o.members.len(), o.members_next),
                (1, next),
                "{key}: the values of a range are members too"
            );
        }
        let none = entry("CN=g,DC=example,DC=com", &[("objectClass", "group")]);
        assert_eq!(member_values(&none), (Vec::new(), None));
        // memberOf is not member.
        let user = entry("CN=u,DC=example,DC=com", &[("memberOf;range=0-1499", m)]);
        assert_eq!(member_values(&user), (Vec::new(), None));
        assert!(object(&user).member_of_partial);
    }

    #[test]
    fn protection_is_read_from_the_entry() {
        let plain = [("objectClass", "group"), ("sAMAccountName", "Cloud Groups")];
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<&'a str>);
        let cases: &[Case] = &[
            ("an ordinary group", &plain, None),
            (
                "DnsAdmins (no well-known RID) by name",
                &[("objectClass", "group"), ("sAMAccountName", "dnsadmins")],
                Some("DnsAdmins"),
            ),
            (
                "adminCount=1",
                &[("objectClass", "group"), ("adminCount", "1")],
                Some("adminCount=1"),
            ),
            (
                "a critical system object",
                &[("objectClass", "group"), ("isCriticalSystemObject", "TRUE")],
                Some("critical system object"),
            ),
            (
                "a primary group that is privileged",
                &[("objectClass", "user"), ("primaryGroupID", "512")],
                Some("primary group"),
            ),
            (
                "a trust account (OTHERDOM$, INTERDOMAIN_TRUST_ACCOUNT)",
                &[
                    ("objectClass", "user"),
                    ("sAMAccountName", "OTHERDOM$"),
                    ("userAccountControl", "2080"),
                ],
                Some("interdomain trust"),
            ),
            (
                "a name ending in $ whatever its flags",
                &[
                    ("objectClass", "user"),
                    ("sAMAccountName", "looks-like-a-host$"),
                    ("userAccountControl", "512"),
                ],
                Some("ends in $"),
            ),
            (
                "trusted for unconstrained delegation",
                &[("objectClass", "user"), ("userAccountControl", "524800")],
                Some("trusted for delegation"),
            ),
            (
                "constrained delegation (msDS-AllowedToDelegateTo)",
                &[
                    ("objectClass", "user"),
                    ("msDS-AllowedToDelegateTo", "cifs/fs1.example.com"),
                ],
                Some("msDS-AllowedToDelegateTo"),
            ),
            (
                "a primary group of Protected Users (525)",
                &[("objectClass", "user"), ("primaryGroupID", "525")],
                Some("primary group"),
            ),
            (
                "an ordinary enabled account",
                &[
                    ("objectClass", "user"),
                    ("sAMAccountName", "alice"),
                    ("userAccountControl", "512"),
                ],
                None,
            ),
        ];
        for (name, attrs, want) in cases {
            let o = object(&entry("CN=x,OU=Staff,DC=example,DC=com", attrs));
            match want {
                None => assert_eq!(o.protected, None, "{name}"),
                Some(w) => assert!(
                    o.protected.as_deref().is_some_and(|p| p.contains(w)),
                    "{name}: {:?}",
                    o.protected
                ),
            }
        }
    }

    #[test]
    fn extended_dns_and_guid_forms() {
        let g: Vec<u8> = (0u8..16).collect();
        let s = guid_string(&g);
        assert_eq!(s, "03020100-0504-0706-0809-0a0b0c0d0e0f");
        assert_eq!(parse_guid_string(&s), Some(g.clone()));
        assert_eq!(parse_guid_string("not-a-guid"), None);
        // Either case, braces or not: one GUID, one normal form.
        let upper = format!("{{{}}}", s.to_uppercase());
        assert_eq!(parse_guid_string(&upper), Some(g.clone()));
        assert_eq!(normalize_guid_string(&upper).as_deref(), Some(s.as_str()));
        assert_eq!(
            parse_guid_string("03020100x0504-0706-0809-0a0b0c0d0e0f"),
            None
        );
        assert_eq!(
            parse_guid_string("0302010-00504-0706-0809-0a0b0c0d0e0f"),
            None
        );
        let v = format!(
            "<GUID={}>;<SID=010500000000000515000000a1b2c3d4e5f6a7b8c9d0e1f200020000>;CN=Domain Admins,CN=Users,DC=example,DC=com",
            hex(&g)
        );
        let (guid, rid, dn) = parse_extended(&v);
        assert_eq!(guid, Some(g));
        assert_eq!(rid, Some(512));
        assert_eq!(dn, "CN=Domain Admins,CN=Users,DC=example,DC=com");
        let (guid, rid, dn) = parse_extended("CN=x,DC=y");
        assert_eq!((guid, rid, dn.as_str()), (None, None, "CN=x,DC=y"));
    }
}
