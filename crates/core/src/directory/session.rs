//! One open LDAP connection to a domain controller: every operation has a timeout, is counted,
//! and fails with words rather than ldap3's internals.

use super::Stats;
use super::bind::BindFailure;
use crate::secret::Secret;
use ldap3::{Ldap, LdapError, Scope, SearchEntry};
use std::time::Duration;

/// Why an LDAP operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OpError {
    #[error("the domain controller did not answer within {} s", .0.as_secs_f32())]
    Timeout(Duration),
    #[error("the domain controller answered with LDAP result {rc} ({name}){}", if .text.is_empty() { String::new() } else { format!(": {text}") })]
    Ldap {
        rc: u32,
        name: &'static str,
        text: String,
    },
    #[error("the connection failed: {0}")]
    Connection(String),
}

impl OpError {
    pub fn from_ldap(e: LdapError, timeout: Duration) -> OpError {
        match e {
            LdapError::Timeout { .. } => OpError::Timeout(timeout),
            LdapError::LdapResult { result } => OpError::Ldap {
                rc: result.rc,
                name: result_name(result.rc),
                text: result.text.trim_end_matches('\0').trim().to_string(),
            },
            other => OpError::Connection(other.to_string()),
        }
    }

    pub fn rc(&self) -> Option<u32> {
        match self {
            OpError::Ldap { rc, .. } => Some(*rc),
            _ => None,
        }
    }
}

/// A bind that did not succeed: refused by AD (with the decoded reason) or failed underneath.
#[derive(Debug, Clone)]
pub enum BindError {
    Refused {
        reason: BindFailure,
        server_text: String,
    },
    Op(OpError),
}

fn result_name(rc: u32) -> &'static str {
    match rc {
        1 => "operations error",
        2 => "protocol error",
        3 => "time limit exceeded",
        8 => "stronger authentication required",
        10 => "referral",
        32 => "no such object",
        34 => "invalid DN syntax",
        49 => "invalid credentials",
        50 => "insufficient access rights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwilling to perform",
        19 => "constraint violation",
        20 => "attribute or value exists",
        16 => "no such attribute",
        21 => "invalid attribute syntax",
        64 => "naming violation",
        65 => "object class violation",
        66 => "not allowed on non-leaf",
        68 => "entry already exists",
        _ => "error",
    }
}

pub struct Session {
    ldap: Ldap,
    op_timeout: Duration,
    stats: Stats,
    /// False only on a plain-LDAP fallback connection.
    pub encrypted: bool,
}

impl Session {
    pub(super) fn new(ldap: Ldap, op_timeout: Duration, encrypted: bool) -> Session {
        Session {
            ldap,
            op_timeout,
            stats: Stats {
                connections: 1,
                operations: 0,
            },
            encrypted,
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// A handle on the same connection for operations of one's own (ldap3 multiplexes them:
    /// several can be in flight at once).
    pub fn handle(&self) -> Ldap {
        self.ldap.clone()
    }

    pub fn op_timeout(&self) -> Duration {
        self.op_timeout
    }

    pub async fn simple_bind(
        &mut self,
        bind_name: &str,
        password: &Secret,
    ) -> Result<(), BindError> {
        // A simple bind sends the password as it is: never over a connection without TLS,
        // whatever the caller asks (the connect step opens none, this is the last guard).
        if !self.encrypted {
            return Err(BindError::Op(OpError::Connection(
                "the connection is not encrypted, and ad-sync never sends the service account's password in clear text; make LDAPS or StartTLS work (see ldap.tls)".into(),
            )));
        }
        self.stats.operations += 1;
        let timeout = self.op_timeout;
        let res = self
            .ldap
            .with_timeout(timeout)
            .simple_bind(bind_name, password.expose())
            .await
            .map_err(|e| BindError::Op(OpError::from_ldap(e, timeout)))?;
        if res.rc == 0 {
            return Ok(());
        }
        Err(BindError::Refused {
            reason: BindFailure::from_result(res.rc, &res.text),
            server_text: res.text.trim_end_matches('\0').trim().to_string(),
        })
    }

    pub async fn search(
        &mut self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>, OpError> {
        self.stats.operations += 1;
        let timeout = self.op_timeout;
        let (entries, _res) = self
            .ldap
            .with_timeout(timeout)
            .search(base, scope, filter, attrs.to_vec())
            .await
            .and_then(|r| r.success())
            .map_err(|e| OpError::from_ldap(e, timeout))?;
        Ok(entries.into_iter().map(SearchEntry::construct).collect())
    }

    /// A search with `controls`: `None` when the DC answers as if `dn` were not there, or
    /// refuses it (no such object, insufficient access: Windows answers either for an object
    /// the account may not read); else the entries, the first `limit` when it cuts them.
    async fn search_unless_hidden(
        &mut self,
        dn: &str,
        scope: Scope,
        attrs: &[&str],
        controls: Vec<ldap3::controls::RawControl>,
        limit: i32,
    ) -> Result<Option<Vec<SearchEntry>>, OpError> {
        self.stats.operations += 1;
        let timeout = self.op_timeout;
        let answer = self
            .ldap
            .with_controls(controls)
            .with_timeout(timeout)
            .with_search_options(ldap3::SearchOptions::new().sizelimit(limit))
            .search(dn, scope, "(objectClass=*)", attrs.to_vec())
            .await;
        let entries = |v: Vec<ldap3::ResultEntry>| v.into_iter().map(SearchEntry::construct);
        match answer {
            // 4: the size limit was reached; what came is what was asked for.
            Ok(r) if r.1.rc == 4 => Ok(Some(entries(r.0).collect())),
            Ok(r) => match r.success() {
                Ok((found, _)) => Ok(Some(entries(found).collect())),
                Err(ldap3::LdapError::LdapResult { result }) if matches!(result.rc, 32 | 50) => {
                    Ok(None)
                }
                Err(e) => Err(OpError::from_ldap(e, timeout)),
            },
            Err(e) => Err(OpError::from_ldap(e, timeout)),
        }
    }

    /// Whether a one-level search under `dn` with `controls` returns any entry (at most one is
    /// asked for); a container the DC hides, or refuses, has none.
    pub async fn first_child_with(
        &mut self,
        dn: &str,
        controls: Vec<ldap3::controls::RawControl>,
    ) -> Result<bool, OpError> {
        let found = self
            .search_unless_hidden(dn, Scope::OneLevel, &["1.1"], controls, 1)
            .await?;
        Ok(found.is_some_and(|v| !v.is_empty()))
    }

    /// Reads one entry by DN with `controls`; `Ok(None)` when the DC hides or refuses it.
    pub async fn read_entry_with(
        &mut self,
        dn: &str,
        attrs: &[&str],
        controls: Vec<ldap3::controls::RawControl>,
    ) -> Result<Option<SearchEntry>, OpError> {
        let found = self
            .search_unless_hidden(dn, Scope::Base, attrs, controls, 0)
            .await?;
        Ok(found.and_then(|mut v| v.pop()))
    }

    /// Reads one entry by DN; `Ok(None)` when it does not exist.
    pub async fn read_entry(
        &mut self,
        dn: &str,
        attrs: &[&str],
    ) -> Result<Option<SearchEntry>, OpError> {
        match self.search(dn, Scope::Base, "(objectClass=*)", attrs).await {
            Ok(mut entries) => Ok(entries.pop()),
            Err(e) if e.rc() == Some(32) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Ends the session politely; errors here change nothing for the caller.
    pub async fn close(mut self) {
        // Closing: the DC drops the connection itself if the unbind is lost.
        let _ = tokio::time::timeout(self.op_timeout, self.ldap.unbind()).await;
    }
}

/// Single-valued attribute helpers over ldap3's entry maps.
pub trait EntryExt {
    fn first(&self, attr: &str) -> Option<&str>;
    fn all(&self, attr: &str) -> &[String];
    fn int(&self, attr: &str) -> Option<i64>;
    fn binary(&self, attr: &str) -> Vec<Vec<u8>>;
}

impl EntryExt for SearchEntry {
    fn first(&self, attr: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(attr))
            .and_then(|(_, v)| v.first())
            .map(String::as_str)
    }

    fn all(&self, attr: &str) -> &[String] {
        self.attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(attr))
            .map(|(_, v)| v.as_slice())
            .unwrap_or(&[])
    }

    fn int(&self, attr: &str) -> Option<i64> {
        self.first(attr).and_then(|v| v.trim().parse().ok())
    }

    /// Binary values (SIDs); ldap3 files a value under `bin_attrs` only when it is not UTF-8,
    /// so both maps are read.
    fn binary(&self, attr: &str) -> Vec<Vec<u8>> {
        let bin = self
            .bin_attrs
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(attr))
            .flat_map(|(_, v)| v.iter().cloned());
        let text = self
            .attrs
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(attr))
            .flat_map(|(_, v)| v.iter().map(|s| s.as_bytes().to_vec()));
        bin.chain(text).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_session_without_tls_never_sends_a_simple_bind() {
        // A listener that records whatever reaches it.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let received = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap_or_else(|e| panic!("{e}"));
            let mut buf = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_millis(500), sock.read_to_end(&mut buf)).await;
            buf
        });
        let (conn, ldap) = ldap3::LdapConnAsync::new(&format!("ldap://{addr}"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move {
            let _ = conn.drive().await;
        });
        let mut s = Session::new(ldap, Duration::from_secs(2), false);
        let secret = crate::secret::Secret::new("Zq7!not-to-be-sent".to_string());
        match s.simple_bind("svc@example.com", &secret).await {
            Err(BindError::Op(OpError::Connection(why))) => {
                assert!(why.contains("never sends"), "{why}")
            }
            other => panic!("{:?}", other.is_ok()),
        }
        let bytes = received.await.unwrap_or_default();
        assert!(bytes.is_empty(), "{} bytes reached the server", bytes.len());
    }
}
