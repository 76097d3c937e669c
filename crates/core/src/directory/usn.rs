//! What changed in AD since a watermark, read by `uSNChanged` where the DC refuses DirSync
//! ([`super::dirsync`]): the way AD → cloud agents read a DC that will not answer the DirSync
//! control (a policy that refuses it, a DC or proxy that does not implement it).
//!
//! Every write on a DC gives the object a new `uSNChanged`, from one counter per DC
//! (`highestCommittedUSN` on the RootDSE). A read of everything in `(from, highest]`, taken after
//! reading `highest`, therefore sees every object changed since the last read, at least once:
//! an object changed again while the read runs is seen again next time. What it gives, and how
//! it differs from DirSync:
//!
//! - the object's whole current values, not only the changed ones (the export reads changed
//!   objects whole anyway);
//! - a group's whole `member` list instead of the values added and removed: a list the DC
//!   answers in ranges (Windows does past 1,500 values) is left out, so a cut list is never
//!   taken for the whole one (the reconciliation reads it in all its ranges);
//! - deletions through the show-deleted control (`1.2.840.113556.1.4.417`): tombstones are
//!   searched like live objects, and seen only if the service account may list Deleted Objects,
//!   as with DirSync (the `source.deletions` check);
//! - moves: the search is of the naming context's root, so an object moved out of the scope
//!   is seen where it went, as DirSync sees it.
//!
//! USNs are one DC's: the watermark is kept with the DC's name in the cloud (as the DirSync
//! cookie is), and another DC means a full read. The cookie text is `usn1:<highest>`.

use super::dirsync::Delta;
use super::session::OpError;
use ldap3::controls::RawControl;
use ldap3::{Ldap, Scope, SearchEntry};
use std::time::Duration;

/// The cookie's prefix, which says the cloud's cursor was written by this reader.
pub const PREFIX: &str = "usn1:";
/// The show-deleted control: tombstones are returned like live objects.
pub const SHOW_DELETED_OID: &str = "1.2.840.113556.1.4.417";

/// The cookie for a read that went up to `highest`.
pub fn cookie(highest: u64) -> String {
    format!("{PREFIX}{highest}")
}

/// The watermark in a cookie this reader wrote; `None` for any other cookie (a DirSync one).
pub fn parse_cookie(text: &str) -> Option<u64> {
    text.strip_prefix(PREFIX)?.parse().ok()
}

/// Whether a DC's answer to the DirSync search means it refuses DirSync to this account
/// (so changes are read by `uSNChanged` instead), rather than failing for another reason (a
/// timeout, a lost connection: those fail the run and are tried again). Windows answers a
/// refused DirSync with unavailableCriticalExtension (12: the control is not supported),
/// insufficientAccessRights (50) or unwillingToPerform (53: a policy refuses it).
pub fn refuses_dirsync(e: &OpError) -> bool {
    matches!(e.rc(), Some(12 | 50 | 53))
}

/// The search filter for objects matching `filter` changed in `(from, to]`.
pub fn filter(filter: &str, from: u64, to: u64) -> String {
    format!(
        "(&{filter}(uSNChanged>={})(uSNChanged<={to}))",
        from.saturating_add(1)
    )
}

/// The DC's `highestCommittedUSN` (its RootDSE): how far a read started now will see.
pub async fn highest(ldap: &Ldap, timeout: Duration) -> Result<u64, OpError> {
    let mut ldap = ldap.clone();
    let (entries, _) = ldap
        .with_timeout(timeout)
        .search(
            "",
            Scope::Base,
            "(objectClass=*)",
            vec!["highestCommittedUSN"],
        )
        .await
        .and_then(|r| r.success())
        .map_err(|e| OpError::from_ldap(e, timeout))?;
    entries
        .into_iter()
        .next()
        .map(SearchEntry::construct)
        .and_then(|e| {
            e.attrs
                .get("highestCommittedUSN")
                .and_then(|v| v.first())
                .and_then(|v| v.parse().ok())
        })
        .ok_or_else(|| {
            OpError::Connection("the DC's RootDSE names no highestCommittedUSN".to_string())
        })
}

/// One entry of the read as a change: its attributes whole, except a list the DC answered in
/// ranges (`member;range=0-1499`), which is left out rather than taken for the whole list.
pub fn delta(mut entry: SearchEntry) -> Option<Delta> {
    entry.attrs.retain(|name, _| !name.contains(';'));
    super::dirsync::delta(&entry)
}

/// A read of everything changed after `from`, page by page (1,000 objects at a time).
pub struct Read {
    pages: super::object::PagedSearch,
    /// The watermark this read goes up to: the next read's `from`.
    pub highest: u64,
}

impl Read {
    /// Starts the read: `base` is the naming context's root, `filter` the objects wanted,
    /// `attrs` checked as DirSync's are (never a secret attribute).
    pub async fn start(
        ldap: &Ldap,
        timeout: Duration,
        base: &str,
        wanted: &str,
        attrs: &[&str],
        from: u64,
    ) -> Result<Read, String> {
        super::dirsync::Dc::check_attrs(attrs)?;
        let highest = highest(ldap, timeout)
            .await
            .map_err(|e| format!("reading the DC's highest USN: {e}"))?;
        let mut all: Vec<&str> = attrs.to_vec();
        for a in ["objectGUID", "parentGUID", "isDeleted"] {
            if !all.iter().any(|x| x.eq_ignore_ascii_case(a)) {
                all.push(a);
            }
        }
        let show_deleted = RawControl {
            ctype: SHOW_DELETED_OID.to_string(),
            crit: true,
            val: None,
        };
        let pages = super::object::search_pages_with(
            ldap,
            timeout,
            base,
            &filter(wanted, from, highest),
            &all,
            vec![show_deleted],
        )
        .await
        .map_err(|e| format!("reading AD's changes by uSNChanged: {e}"))?;
        Ok(Read { pages, highest })
    }

    /// The next page of changes, `None` after the last (a read the DC cut short is an error).
    pub async fn next_page(&mut self) -> Result<Option<Vec<Delta>>, String> {
        let page = self
            .pages
            .next_page()
            .await
            .map_err(|e| format!("reading AD's changes by uSNChanged: {e}"))?;
        Ok(page.map(|entries| entries.into_iter().filter_map(delta).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_cookie_round_trips_and_a_dirsync_cookie_is_not_taken_for_one() {
        assert_eq!(parse_cookie(&cookie(4711)), Some(4711));
        assert_eq!(parse_cookie(&cookie(0)), Some(0));
        for other in ["", "usn1:", "usn1:x", "usn2:5", "TVNEUwM=", "5"] {
            assert_eq!(parse_cookie(other), None, "{other}");
        }
    }

    #[test]
    fn only_a_refusal_of_dirsync_itself_switches_to_usn() {
        let ldap = |rc| OpError::Ldap {
            rc,
            name: "",
            text: String::new(),
        };
        for (e, refused) in [
            (ldap(12), true),
            (ldap(50), true),
            (ldap(53), true),
            // Busy, unavailable, a bad filter, a size limit: the run fails and is tried again.
            (ldap(51), false),
            (ldap(52), false),
            (ldap(87), false),
            (ldap(4), false),
            (OpError::Timeout(Duration::from_secs(5)), false),
            (OpError::Connection("reset".into()), false),
        ] {
            assert_eq!(refuses_dirsync(&e), refused, "{e:?}");
        }
    }

    #[test]
    fn the_read_covers_exactly_the_changes_after_the_watermark() {
        assert_eq!(
            filter("(objectClass=user)", 100, 250),
            "(&(objectClass=user)(uSNChanged>=101)(uSNChanged<=250))"
        );
        assert_eq!(
            filter("(x=1)", u64::MAX, u64::MAX),
            format!(
                "(&(x=1)(uSNChanged>={})(uSNChanged<={}))",
                u64::MAX,
                u64::MAX
            )
        );
    }

    #[test]
    fn a_member_list_in_ranges_is_left_out_never_taken_for_the_whole() {
        let entry = |attrs: &[(&str, &[&str])]| SearchEntry {
            dn: "CN=G,DC=example,DC=com".into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
            bin_attrs: HashMap::from([("objectGUID".to_string(), vec![vec![1u8; 16]])]),
        };
        let whole = delta(entry(&[("member", &["CN=a", "CN=b"]), ("name", &["G"])]))
            .unwrap_or_else(|| panic!("no delta"));
        assert_eq!(whole.values["member"], ["CN=a", "CN=b"]);
        let ranged = delta(entry(&[
            ("member;range=0-1499", &["CN=a"]),
            ("name", &["G"]),
        ]))
        .unwrap_or_else(|| panic!("no delta"));
        assert!(!ranged.values.contains_key("member"), "{ranged:?}");
        assert!(ranged.links.is_empty(), "{ranged:?}");
        let deleted = delta(entry(&[("isDeleted", &["TRUE"])])).unwrap_or_else(|| panic!("none"));
        assert!(deleted.deleted);
    }
}
