//! The agent's side of AD: one connection with the configured security, bound as the service
//! account; finding objects by objectGUID, by the agent's marker or by name; and the writes,
//! each with the configured timeout. Many operations may be in flight on the one connection.
//!
//! Objects the agent creates carry `adminDescription: ad-sync:<cloud id>` so that another agent
//! (after a failover) or the same one (after a crash between AD's answer and the state commit)
//! recognises them as its own instead of reporting a collision.

use crate::plan;
use ad_sync_core::answers::Answers;
use ad_sync_core::directory;
use ad_sync_core::directory::bind::AccountName;
use ad_sync_core::directory::session::OpError;
use ad_sync_core::dn::Dn;
use ad_sync_core::secret::Secret;
use ldap3::controls::RawControl;
use ldap3::{Ldap, Mod, Scope, SearchEntry};
use std::collections::HashSet;
use std::time::Duration;

pub const MARKER_PREFIX: &str = "ad-sync:";
/// LDAP_SERVER_EXTENDED_DN_OID: DN values come back as `<GUID=..>;<SID=..>;CN=...`.
const EXTENDED_DN: &str = "1.2.840.113556.1.4.529";
pub const UAC_DISABLED: i64 = 0x2;
pub const UAC_NORMAL: i64 = 0x200;
/// Global security group.
pub const GROUP_TYPE_GLOBAL_SECURITY: &str = "-2147483646";
/// Well-known RIDs of groups whose members the agent never touches.
const PRIVILEGED_GROUP_RIDS: &[u32] = &[512, 516, 518, 519, 520, 521, 544, 548, 549, 550, 551];

const ATTRS: &[&str] = &[
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
    "member",
    "memberOf",
];

/// Why an AD step failed: the DC is away (retry the whole run later) or AD refused this one
/// operation (report it against the change and go on).
#[derive(Debug, Clone)]
pub enum AdError {
    Unavailable(String),
    Refused { rc: u32, message: String },
}

impl std::fmt::Display for AdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdError::Unavailable(m) => write!(f, "the domain controller is not available: {m}"),
            AdError::Refused { message, .. } => f.write_str(message),
        }
    }
}

/// What an administrator does about AD refusing one of the agent's operations.
fn fix_for(rc: u32) -> &'static str {
    match rc {
        50 => {
            "The service account lacks the right: delegate control of the Root User container and the sync group's container to it (create, delete and manage user accounts and groups), then `ad-sync-setup check` confirms it"
        }
        19 => {
            "AD refused the value: for a password, it does not meet the domain's password policy (length, complexity, history); set one that does in the cloud"
        }
        68 => "An object with that name is already in the container; rename or remove it",
        32 => {
            "The object or its container is gone; check that the Root User container and the sync group still exist"
        }
        53 => "AD would not do it; its message above says why",
        _ => {
            "See AD's message above; the change is retried at the next comparison with AD (every 6 hours, or `run --once --resync`)"
        }
    }
}

impl AdError {
    fn from_op(e: OpError, what: &str) -> AdError {
        match e {
            OpError::Ldap { rc, .. } if !matches!(rc, 51 | 52 | 80 | 81) => AdError::Refused {
                rc,
                message: format!("{what}: {e}. {}", fix_for(rc)),
            },
            other => AdError::Unavailable(format!("{what}: {other}")),
        }
    }

    pub fn rc(&self) -> Option<u32> {
        match self {
            AdError::Refused { rc, .. } => Some(*rc),
            AdError::Unavailable(_) => None,
        }
    }
}

/// One AD object as the agent reads it.
#[derive(Debug, Clone, Default)]
pub struct Obj {
    pub guid: Vec<u8>,
    pub dn: String,
    pub parsed: Option<Dn>,
    pub sam: String,
    pub marker: Option<String>,
    pub is_group: bool,
    pub uac: i64,
    pub lockout_time: i64,
    pub given: Option<String>,
    pub sn: Option<String>,
    pub display: Option<String>,
    pub mail: Option<String>,
    pub upn: Option<String>,
    /// Direct members: (objectGUID, DN).
    pub members: Vec<(Vec<u8>, String)>,
    /// Groups it is directly in: (objectGUID, DN).
    pub member_of: Vec<(Vec<u8>, String)>,
    /// Why the agent must not touch it, when it must not.
    pub protected: Option<String>,
}

impl Obj {
    pub fn marker_id(&self) -> Option<&str> {
        self.marker
            .as_deref()
            .and_then(|m| m.strip_prefix(MARKER_PREFIX))
    }
}

pub struct Ad {
    ldap: Ldap,
    timeout: Duration,
    pub domain_dn: String,
    /// The containers the agent acts in and the connection's security (what the planner
    /// needs).
    pub scope: plan::Scope,
}

fn text(e: &SearchEntry, attr: &str) -> Option<String> {
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

fn binary(e: &SearchEntry, attr: &str) -> Option<Vec<u8>> {
    e.bin_attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .and_then(|(_, v)| v.first().cloned())
        .or_else(|| text(e, attr).map(String::into_bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The objectGUID in its usual string form (what `<GUID=...>` takes).
pub fn guid_string(g: &[u8]) -> String {
    if g.len() != 16 {
        return hex(g);
    }
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{}-{}",
        g[3],
        g[2],
        g[1],
        g[0],
        g[5],
        g[4],
        g[7],
        g[6],
        hex(&g[8..10]),
        hex(&g[10..16])
    )
}

/// Reads `<GUID=hex>;<SID=hex>;CN=...` (the extended DN form): the GUID, the SID's RID and
/// the plain DN.
fn parse_extended(value: &str) -> (Option<Vec<u8>>, Option<u32>, String) {
    let mut guid = None;
    let mut rid = None;
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
            rid = unhex(s)
                .and_then(|b| ad_sync_core::directory::sid::to_string(&b))
                .or_else(|| Some(s.to_string()))
                .and_then(|s| ad_sync_core::directory::sid::split_rid(&s).map(|(_, r)| r));
        }
        rest = &stripped[end + 1..];
        rest = rest.strip_prefix(';').unwrap_or(rest);
    }
    (guid, rid, rest.to_string())
}

fn parse_guid_string(s: &str) -> Option<Vec<u8>> {
    let h = unhex(&s.replace('-', ""))?;
    if h.len() != 16 {
        return None;
    }
    let mut g = h.clone();
    g[0..4].copy_from_slice(&[h[3], h[2], h[1], h[0]]);
    g[4..6].copy_from_slice(&[h[5], h[4]]);
    g[6..8].copy_from_slice(&[h[7], h[6]]);
    Some(g)
}

fn escape_binary(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// A filter term matching one attribute value exactly.
pub fn eq(attr: &str, value: &str) -> String {
    format!("({attr}={})", ldap3::ldap_escape(value))
}

pub fn guid_filter(guid: &[u8]) -> String {
    format!("(objectGUID={})", escape_binary(guid))
}

impl Ad {
    /// Connects with the configured security (LDAPS, StartTLS, or plain LDAP only when the
    /// config allows the fallback) and binds as the service account.
    pub async fn connect(answers: &Answers, password: &Secret) -> Result<Ad, AdError> {
        let root = Dn::parse(&answers.directory.root_user_dn)
            .map_err(|e| {
                AdError::Unavailable(format!(
                    "[directory] root_user_dn is not a DN ({}); re-run ad-sync-setup",
                    e.message
                ))
            })?
            .dn;
        let sync_group = match answers.directory.sync_group_dn.as_deref() {
            Some(t) => Some(
                Dn::parse(t)
                    .map_err(|e| {
                        AdError::Unavailable(format!(
                            "[directory] sync_group_dn is not a DN ({}); re-run ad-sync-setup",
                            e.message
                        ))
                    })?
                    .dn,
            ),
            None => None,
        };
        let dns_domain = root.domain().unwrap_or_default();
        let domain_dn = root
            .domain_dn()
            .map(|d| d.to_comma_form())
            .unwrap_or_default();
        let opts = answers.connect_options(Some(&dns_domain));
        let mut conn = directory::connect(&opts).await;
        let Some(mut session) = conn.session.take() else {
            let why = ad_sync_core::preflight::evaluate::connection(&conn)
                .into_iter()
                .find(|c| c.status == ad_sync_core::preflight::Status::Fail)
                .map(|c| format!("{} {}", c.summary, c.fix))
                .unwrap_or_else(|| format!("cannot connect to {}", opts.host));
            return Err(AdError::Unavailable(why));
        };
        let account = AccountName::parse(&answers.service_account.username).map_err(|e| {
            AdError::Unavailable(format!(
                "[service_account] username {e}; re-run ad-sync-setup"
            ))
        })?;
        let bind_name = account.bind_name(&dns_domain);
        if let Err(e) = session.simple_bind(&bind_name, password).await {
            let why = match e {
                directory::session::BindError::Refused {
                    reason,
                    server_text: _,
                } => format!(
                    "the service account `{bind_name}` cannot log on: {}. {}",
                    reason.words(),
                    reason.fix()
                ),
                directory::session::BindError::Op(op) => {
                    format!("logging on as `{bind_name}`: {op}")
                }
            };
            return Err(AdError::Unavailable(why));
        }
        Ok(Ad {
            ldap: session.handle(),
            timeout: session.op_timeout(),
            domain_dn,
            scope: plan::Scope {
                root,
                sync_group,
                dns_domain,
                host: opts.host,
                encrypted: session.encrypted,
            },
        })
    }

    async fn search_raw(
        &self,
        base: &str,
        scope: Scope,
        filter: &str,
    ) -> Result<Vec<Obj>, AdError> {
        let mut ldap = self.ldap.clone();
        let (entries, _) = ldap
            .with_controls(vec![RawControl {
                ctype: EXTENDED_DN.to_string(),
                crit: false,
                val: None,
            }])
            .with_timeout(self.timeout)
            .search(base, scope, filter, ATTRS.to_vec())
            .await
            .and_then(|r| r.success())
            .map_err(|e| AdError::from_op(OpError::from_ldap(e, self.timeout), "search"))?;
        Ok(entries
            .into_iter()
            .map(SearchEntry::construct)
            .map(|e| object(&e))
            .collect())
    }

    /// Every object matching any of `terms` anywhere in the domain: 100 terms per search, 4
    /// searches at once.
    pub async fn find_any(&self, terms: Vec<String>) -> Result<Vec<Obj>, AdError> {
        use futures_util::StreamExt;
        let chunks: Vec<String> = terms
            .chunks(100)
            .map(|c| {
                if c.len() == 1 {
                    c[0].clone()
                } else {
                    format!("(|{})", c.concat())
                }
            })
            .collect();
        let base = self.domain_dn.clone();
        let results: Vec<Result<Vec<Obj>, AdError>> = futures_util::stream::iter(chunks)
            .map(|f| {
                let base = base.clone();
                async move { self.search_raw(&base, Scope::Subtree, &f).await }
            })
            .buffer_unordered(4)
            .collect()
            .await;
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for r in results {
            for o in r? {
                if seen.insert(o.guid.clone()) {
                    out.push(o);
                }
            }
        }
        Ok(out)
    }

    pub async fn read(&self, dn: &str) -> Result<Option<Obj>, AdError> {
        match self.search_raw(dn, Scope::Base, "(objectClass=*)").await {
            Ok(mut v) => Ok(v.pop()),
            Err(AdError::Refused { rc: 32, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn add(
        &self,
        dn: &str,
        attrs: Vec<(String, HashSet<Vec<u8>>)>,
    ) -> Result<(), AdError> {
        let mut ldap = self.ldap.clone();
        ldap.with_timeout(self.timeout)
            .add(
                dn,
                attrs
                    .into_iter()
                    .map(|(k, v)| (k.into_bytes(), v))
                    .collect::<Vec<_>>(),
            )
            .await
            .and_then(|r| r.success())
            .map(|_| ())
            .map_err(|e| {
                AdError::from_op(OpError::from_ldap(e, self.timeout), &format!("create {dn}"))
            })
    }

    pub async fn modify(
        &self,
        dn: &str,
        mods: Vec<Mod<Vec<u8>>>,
        what: &str,
    ) -> Result<(), AdError> {
        let mut ldap = self.ldap.clone();
        ldap.with_timeout(self.timeout)
            .modify(dn, mods)
            .await
            .and_then(|r| r.success())
            .map(|_| ())
            .map_err(|e| {
                AdError::from_op(OpError::from_ldap(e, self.timeout), &format!("{what} {dn}"))
            })
    }

    pub async fn rename(&self, dn: &str, new_rdn: &str) -> Result<(), AdError> {
        let mut ldap = self.ldap.clone();
        ldap.with_timeout(self.timeout)
            .modifydn(dn, new_rdn, true, None)
            .await
            .and_then(|r| r.success())
            .map(|_| ())
            .map_err(|e| {
                AdError::from_op(OpError::from_ldap(e, self.timeout), &format!("rename {dn}"))
            })
    }

    pub async fn delete(&self, dn: &str) -> Result<(), AdError> {
        let mut ldap = self.ldap.clone();
        ldap.with_timeout(self.timeout)
            .delete(dn)
            .await
            .and_then(|r| r.success())
            .map(|_| ())
            .map_err(|e| {
                AdError::from_op(OpError::from_ldap(e, self.timeout), &format!("delete {dn}"))
            })
    }

    pub async fn close(mut self) {
        // Closing: the DC drops the connection itself if the unbind is lost.
        let _ = tokio::time::timeout(self.timeout, self.ldap.unbind()).await;
    }
}

/// One search entry (asked for with the extended-DN control) as the agent reads it, with why
/// it must not be touched when it must not: adminCount=1, a critical system object, a built-in
/// RID (below 1000) or direct membership of a privileged group.
pub fn object(e: &SearchEntry) -> Obj {
    let (_, own_rid, dn) = parse_extended(&e.dn);
    let classes = texts(e, "objectClass");
    let is_group = classes.iter().any(|c| c.eq_ignore_ascii_case("group"));
    let members = texts(e, "member")
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
            if rid.is_some_and(|r| PRIVILEGED_GROUP_RIDS.contains(&r)) {
                privileged_group = Some(dn.clone());
            }
            g.map(|g| (g, dn))
        })
        .collect();
    let rid = own_rid.or_else(|| {
        binary(e, "objectSid")
            .and_then(|b| ad_sync_core::directory::sid::to_string(&b))
            .and_then(|s| ad_sync_core::directory::sid::split_rid(&s).map(|(_, r)| r))
    });
    let protected = if text(e, "adminCount").as_deref() == Some("1") {
        Some("it is protected (adminCount=1: it is or was in an administrative group)".to_string())
    } else if text(e, "isCriticalSystemObject").is_some_and(|v| v.eq_ignore_ascii_case("TRUE")) {
        Some("it is a critical system object".to_string())
    } else if rid.is_some_and(|r| r < 1000) {
        Some("it is a built-in account or group".to_string())
    } else {
        privileged_group.map(|g| format!("it is a member of the privileged group {g}"))
    };
    Obj {
        guid: binary(e, "objectGUID").unwrap_or_default(),
        parsed: Dn::parse(&dn).ok().map(|p| p.dn),
        dn,
        sam: text(e, "sAMAccountName").unwrap_or_default(),
        marker: text(e, "adminDescription"),
        is_group,
        uac: text(e, "userAccountControl")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        lockout_time: text(e, "lockoutTime")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        given: text(e, "givenName"),
        sn: text(e, "sn"),
        display: text(e, "displayName"),
        mail: text(e, "mail"),
        upn: text(e, "userPrincipalName"),
        members,
        member_of,
        protected,
    }
}

/// `unicodePwd`'s value: the password in double quotes, UTF-16LE.
pub fn unicode_pwd(password: &Secret) -> zeroize::Zeroizing<Vec<u8>> {
    let quoted = zeroize::Zeroizing::new(format!("\"{}\"", password.expose()));
    zeroize::Zeroizing::new(
        quoted
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect::<Vec<u8>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_dns_and_guid_forms() {
        let g: Vec<u8> = (0u8..16).collect();
        let s = guid_string(&g);
        assert_eq!(s, "03020100-0504-0706-0809-0a0b0c0d0e0f");
        assert_eq!(parse_guid_string(&s), Some(g.clone()));
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

    #[test]
    fn unicode_pwd_is_quoted_utf16le() {
        let v = unicode_pwd(&Secret::new("ab"));
        assert_eq!(v.as_slice(), &[b'"', 0, b'a', 0, b'b', 0, b'"', 0]);
    }
}
