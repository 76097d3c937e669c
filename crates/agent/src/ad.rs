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
use ad_sync_core::secret::Secret;
use ldap3::{Ldap, Mod, Scope};
use std::collections::HashSet;
use std::time::Duration;

use ad_sync_core::directory::object::{self as reads};
pub use ad_sync_core::directory::object::{ATTRS, ATTRS_BUT_MEMBERS as SLIM_GROUP_ATTRS};

/// What tells which groups an object is directly in.
pub const MEMBER_OF_ATTRS: &[&str] = &["objectGUID", "memberOf"];
pub use ad_sync_core::directory::object::{
    GROUP_TYPE_GLOBAL_SECURITY, MARKER_PREFIX, Obj, UAC_DISABLED, UAC_NORMAL, eq, guid_filter,
    guid_string, object,
};

/// Where an orphan scan got to on one DC (see `Ad::watermark`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Watermark {
    /// The DC's `dsServiceName` (its NTDS Settings object).
    pub dc: String,
    pub usn: i64,
}

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

pub struct Ad {
    ldap: Ldap,
    timeout: Duration,
    /// The service account it is bound as (Tier 0 by definition).
    account: AccountName,
    pub domain_dn: String,
    /// The containers the agent acts in and the connection's security (what the planner
    /// needs).
    pub scope: plan::Scope,
}

impl Ad {
    /// Connects with the configured security (LDAPS, StartTLS, or plain LDAP only when the
    /// config allows the fallback) and binds as the service account.
    pub async fn connect(answers: &Answers, password: &Secret) -> Result<Ad, AdError> {
        let mut scope = plan::Scope::from_answers(answers)
            .map_err(|e| AdError::Unavailable(format!("{e}; re-run ad-sync-setup")))?;
        let dns_domain = scope.dns_domain.clone();
        let domain_dn = scope
            .domain_dn()
            .map(|d| d.to_comma_form())
            .unwrap_or_default();
        let opts = answers.connect_options(Some(&dns_domain));
        let mut conn = directory::connect(&opts).await;
        let Some(mut session) = conn.session.take() else {
            // Every failed step (the secure port, then the fallback), each with its fix.
            let failed: Vec<String> = ad_sync_core::preflight::evaluate::connection(&conn)
                .into_iter()
                .filter(|c| c.status == ad_sync_core::preflight::Status::Fail)
                .map(|c| format!("{} {}", c.summary, c.fix))
                .collect();
            let why = if failed.is_empty() {
                format!("cannot connect to {}", opts.host)
            } else {
                failed.join("; ")
            };
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
        scope.encrypted = session.encrypted;
        Ok(Ad {
            ldap: session.handle(),
            timeout: session.op_timeout(),
            account,
            domain_dn,
            scope,
        })
    }

    /// The bound connection (for DirSync, which reads with its own control).
    pub fn ldap(&self) -> &Ldap {
        &self.ldap
    }

    /// Each operation's time limit.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Entries anywhere in the domain matching `filter`, with `attrs`, in the extended-DN form.
    pub async fn search_with(
        &self,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<ldap3::SearchEntry>, AdError> {
        reads::search(
            &self.ldap,
            self.timeout,
            &self.domain_dn,
            Scope::Subtree,
            filter,
            attrs,
        )
        .await
        .map_err(|e| AdError::from_op(e, "search"))
    }

    async fn search_raw(
        &self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<Obj>, AdError> {
        let entries = reads::search(&self.ldap, self.timeout, base, scope, filter, attrs)
            .await
            .map_err(|e| AdError::from_op(e, "search"))?;
        Ok(entries.iter().map(object).collect())
    }

    /// Every object matching any of `terms` anywhere in the domain: 100 terms per search, 4
    /// searches at once.
    pub async fn find_any(&self, terms: Vec<String>, attrs: &[&str]) -> Result<Vec<Obj>, AdError> {
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
                async move { self.search_raw(&base, Scope::Subtree, &f, attrs).await }
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
        // A large group's members come in ranges (Windows: 1,500 a range): the rest is read,
        // so that the planner compares the whole list.
        for o in out.iter_mut().filter(|o| o.members_next.is_some()) {
            reads::complete_members(&self.ldap, self.timeout, o)
                .await
                .map_err(|e| AdError::from_op(e, &format!("read the members of {}", o.dn)))?;
        }
        Ok(out)
    }

    pub async fn read(&self, dn: &str) -> Result<Option<Obj>, AdError> {
        let mut o = reads::read_base(&self.ldap, self.timeout, dn, ATTRS)
            .await
            .map(|e| e.as_ref().map(object))
            .map_err(|e| AdError::from_op(e, "search"))?;
        if let Some(o) = o.as_mut() {
            reads::complete_members(&self.ldap, self.timeout, o)
                .await
                .map_err(|e| AdError::from_op(e, &format!("read the members of {dn}")))?;
        }
        Ok(o)
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

    /// Every object under `base` matching `filter`, however many (paged), with `attrs` read.
    pub async fn search_paged(
        &self,
        base: &str,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<Obj>, AdError> {
        reads::search_paged(&self.ldap, self.timeout, base, filter, attrs)
            .await
            .map(|entries| entries.iter().map(object).collect())
            .map_err(|e| AdError::from_op(e, &format!("search {base}")))
    }

    /// Every object under `base` matching `filter`, page by page (`PagedSearch::next_page`).
    pub async fn search_pages(
        &self,
        base: &str,
        filter: &str,
        attrs: &[&str],
    ) -> Result<ad_sync_core::directory::object::PagedSearch, AdError> {
        reads::search_pages(&self.ldap, self.timeout, base, filter, attrs)
            .await
            .map_err(|e| AdError::from_op(e, &format!("search {base}")))
    }

    /// Where this DC's changes are now: its identity (`dsServiceName`) and its
    /// `highestCommittedUSN`, read before an orphan scan so the next one needs only what changed
    /// after it. USNs are per DC: a watermark from another DC is not used.
    pub async fn watermark(&self) -> Result<Watermark, AdError> {
        let entries = reads::search(
            &self.ldap,
            self.timeout,
            "",
            Scope::Base,
            "(objectClass=*)",
            &["dsServiceName", "highestCommittedUSN"],
        )
        .await
        .map_err(|e| AdError::from_op(e, "read the RootDSE"))?;
        let first = |a: &str| {
            entries
                .first()
                .and_then(|e| e.attrs.get(a))
                .and_then(|v| v.first())
                .cloned()
        };
        match (first("dsServiceName"), first("highestCommittedUSN")) {
            (Some(dc), Some(usn)) => Ok(Watermark {
                dc,
                usn: usn.parse().map_err(|_| {
                    AdError::Unavailable(format!(
                        "the DC's highestCommittedUSN `{usn}` is not a number"
                    ))
                })?,
            }),
            _ => Err(AdError::Unavailable(
                "the DC's RootDSE has no dsServiceName or highestCommittedUSN".into(),
            )),
        }
    }

    /// Every user and group in the agent's containers (the Root User container, and the sync
    /// group's container when it is elsewhere) that carries the agent's marker, changed after
    /// USN `since` when given (uSNChanged is indexed: only what changed is read), with only
    /// what tells whose it is (objectGUID, the marker, the name, the classes): an orphan's whole
    /// object is read afterwards by objectGUID, like any removal's. Without `since`,
    /// adminDescription is not indexed in AD, so the DC reads every object of those subtrees
    /// (no more: the search is scoped to them); `cargo bench --bench agent` measures both.
    ///
    /// Read a page at a time; only the objects `keep` accepts are kept (an orphan scan keeps
    /// those its state does not know), so a scan of 50,000 managed objects holds one page of
    /// them. Returns how many marked objects were read, and those kept.
    pub async fn marked(
        &self,
        since: Option<i64>,
        mut keep: impl FnMut(&Obj) -> bool,
    ) -> Result<(usize, Vec<Obj>), AdError> {
        let changed = since.map_or(String::new(), |usn| format!("(uSNChanged>={})", usn + 1));
        let filter = format!(
            "(&{changed}(|(objectCategory=person)(objectClass=group))(adminDescription={}*))",
            ldap3::ldap_escape(MARKER_PREFIX)
        );
        let mut bases = vec![self.scope.root.to_comma_form()];
        if let Some(home) = self.scope.group_parent()
            && !self.scope.under_root(&Some(home.clone()))
            && home != self.scope.root
        {
            bases.push(home.to_comma_form());
        }
        let mut read = 0;
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let mut out: Vec<Obj> = Vec::new();
        for base in bases {
            let mut pages = self
                .search_pages(
                    &base,
                    &filter,
                    &[
                        "objectGUID",
                        "objectClass",
                        "sAMAccountName",
                        "adminDescription",
                        "groupType",
                    ],
                )
                .await?;
            while let Some(entries) = pages
                .next_page()
                .await
                .map_err(|e| AdError::from_op(e, &format!("search {base}")))?
            {
                for o in entries.iter().map(object) {
                    read += 1;
                    if keep(&o) && seen.insert(o.guid.clone()) {
                        out.push(o);
                    }
                }
            }
        }
        Ok((read, out))
    }

    /// The members of the group `dn`, nested membership included.
    pub async fn nested_members(&self, dn: &str) -> Result<HashSet<Vec<u8>>, AdError> {
        reads::nested_members(
            &self.ldap,
            self.timeout,
            &self.domain_dn,
            vec![dn.to_string()],
        )
        .await
        .map_err(|e| AdError::from_op(e, &format!("find the members of {dn}")))
    }

    /// Tier 0: who holds power in the domain (`tier0::Tier0`), read from its ACLs and groups.
    pub async fn tier0(&self) -> Result<ad_sync_core::tier0::Tier0, AdError> {
        directory::power::tier0(&self.ldap, self.timeout, &self.scope, Some(&self.account))
            .await
            .map_err(|e| AdError::from_op(e, "read who holds power in the domain"))
    }

    pub async fn group_privilege(&self, group: &Obj) -> Result<Option<String>, AdError> {
        reads::group_privilege_of(&self.ldap, self.timeout, group)
            .await
            .map_err(|e| AdError::from_op(e, "read the groups the sync group is in"))
    }

    pub async fn close(mut self) {
        // Closing: the DC drops the connection itself if the unbind is lost.
        let _ = tokio::time::timeout(self.timeout, self.ldap.unbind()).await;
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
    fn unicode_pwd_is_quoted_utf16le() {
        let v = unicode_pwd(&Secret::new("ab"));
        assert_eq!(v.as_slice(), &[b'"', 0, b'a', 0, b'b', 0, b'"', 0]);
    }
}
