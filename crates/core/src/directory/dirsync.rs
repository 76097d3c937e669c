//! What changed in AD since a cookie, read with the DirSync control (MS-ADTS 3.1.1.3.4.1.3,
//! `1.2.840.113556.1.4.841`), as Entra Connect and every AD → cloud agent reads it: a subtree
//! search of the naming context's root that answers with only the objects changed since the
//! cookie, each with only its changed attributes, and a new cookie.
//!
//! The flags asked for, and why:
//! - `LDAP_DIRSYNC_OBJECT_SECURITY`: no replication right is needed, only the read rights the
//!   service account already has; objects and attributes it cannot read are left out (and
//!   deleted objects come back as their objectGUID with `isDeleted`).
//! - `LDAP_DIRSYNC_INCREMENTAL_VALUES`: a group's membership change is the values added and
//!   removed (`member;range=1-1` and `member;range=0-0`), not the whole list, so a group of
//!   50,000 members costs one value per change.
//! - `LDAP_DIRSYNC_ANCESTORS_FIRST_ORDER`: a parent before its children, so a new container's
//!   objects never arrive before it.
//! - `LDAP_DIRSYNC_PUBLIC_DATA_ONLY`: no secret attribute is returned even if asked; the
//!   attribute list is checked against [`SECRET_ATTRIBUTES`] besides (a Samba without the
//!   CVE-2023-4154 fix returns them to DirSync; Windows never does).
//!
//! The server may split its answer: `more` says another request with the new cookie has more
//! to give (Windows does past `MaxBytes`; Samba 4.17 gives everything at once and never sets
//! it). [`drain`] loops while it does, one page at a time, so the caller can hand each page on
//! with its cookie (the cookie is committed with the changes it produced, never before them).
//!
//! The control's value is built and read with the BER code ldap3 uses (`ldap3::asn1`); a
//! malformed answer is an error in words, never a panic.

use super::session::OpError;
use ldap3::asn1::{Integer, OctetString, Sequence, StructureTag, Tag, TagClass};
use ldap3::controls::RawControl;
use ldap3::{Ldap, Scope, SearchEntry};
use std::collections::BTreeMap;
use std::time::Duration;

pub const OID: &str = "1.2.840.113556.1.4.841";
pub const OBJECT_SECURITY: u32 = 0x0000_0001;
pub const ANCESTORS_FIRST_ORDER: u32 = 0x0000_0800;
pub const PUBLIC_DATA_ONLY: u32 = 0x0000_2000;
pub const INCREMENTAL_VALUES: u32 = 0x8000_0000;
/// What the agent asks for (see the module's notes).
pub const FLAGS: u32 =
    OBJECT_SECURITY | ANCESTORS_FIRST_ORDER | PUBLIC_DATA_ONLY | INCREMENTAL_VALUES;
/// The most bytes of one answer (AD's own ceiling applies when lower).
pub const MAX_BYTES: u32 = 1_048_576;
/// The most pages one [`drain`] reads before it stops and says so: a server that keeps saying
/// "more" forever must not keep the agent in one run.
pub const MAX_PAGES: usize = 10_000;

pub use ad_sync_api::mapping::{SECRET_ATTRIBUTES, is_secret};

/// `SEQUENCE { INTEGER a, INTEGER b, OCTET STRING bytes }`, in BER: the shape of both the
/// request's value and the answer's.
fn two_integers_and_bytes(a: i64, b: i64, bytes: &[u8]) -> Vec<u8> {
    let int = |inner| {
        Tag::Integer(Integer {
            inner,
            ..Default::default()
        })
    };
    let value = Tag::Sequence(Sequence {
        inner: vec![
            int(a),
            int(b),
            Tag::OctetString(OctetString {
                inner: bytes.to_vec(),
                ..Default::default()
            }),
        ],
        ..Default::default()
    });
    let mut buf = bytes::BytesMut::new();
    // Writing into a growable buffer cannot fail.
    let _ = ldap3::asn1::write::encode_into(&mut buf, ldap3::asn1::ASNTag::into_structure(value));
    buf.to_vec()
}

/// The request control for `cookie` (empty: everything, the first time).
pub fn request(cookie: &[u8]) -> RawControl {
    RawControl {
        ctype: OID.to_string(),
        // Critical: a server that does not know DirSync must refuse, not answer a full search
        // that would be taken for "everything changed".
        crit: true,
        // The flags are a ULONG written as Windows' own client writes it: a 32-bit two's
        // complement INTEGER, so INCREMENTAL_VALUES (the top bit) is a negative number.
        val: Some(two_integers_and_bytes(
            i64::from(FLAGS as i32),
            i64::from(MAX_BYTES),
            cookie,
        )),
    }
}

/// The server's answer control: whether it has more, and the cookie to ask with next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub more: bool,
    pub cookie: Vec<u8>,
}

fn integer(t: &StructureTag) -> Option<i64> {
    let bytes = t
        .clone()
        .match_class(TagClass::Universal)
        .and_then(|t| t.match_id(2))
        .and_then(StructureTag::expect_primitive)?;
    if bytes.is_empty() || bytes.len() > 8 {
        return None;
    }
    // Two's complement, big-endian.
    let first = i64::from(bytes[0] as i8);
    Some(
        bytes[1..]
            .iter()
            .fold(first, |n, b| (n << 8) | i64::from(*b)),
    )
}

/// Reads the answer control's value: `SEQUENCE { MoreResults INTEGER, unused INTEGER,
/// CookieServer OCTET STRING }`.
pub fn parse_answer(value: &[u8]) -> Result<Answer, String> {
    let bad = |what: &str| format!("the DC's DirSync answer is malformed ({what})");
    let (rest, tag) = ldap3::asn1::parse_tag(value).map_err(|_| bad("not BER"))?;
    if !rest.is_empty() {
        return Err(bad("bytes after its end"));
    }
    let parts = tag
        .match_class(TagClass::Universal)
        .and_then(|t| t.match_id(16))
        .and_then(StructureTag::expect_constructed)
        .ok_or_else(|| bad("not a sequence"))?;
    let [more, _unused, cookie] = parts.as_slice() else {
        return Err(bad("not three parts"));
    };
    let more = integer(more).ok_or_else(|| bad("MoreResults is not an integer"))?;
    let cookie = cookie
        .clone()
        .match_class(TagClass::Universal)
        .and_then(|t| t.match_id(4))
        .and_then(StructureTag::expect_primitive)
        .ok_or_else(|| bad("the cookie is not an octet string"))?;
    if cookie.is_empty() {
        return Err(bad("an empty cookie"));
    }
    Ok(Answer {
        more: more != 0,
        cookie,
    })
}

/// One object's change as DirSync reported it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Delta {
    /// objectGUID, in AD's string form (`guid_string`).
    pub guid: String,
    /// Its DN now (for a deleted object, under Deleted Objects).
    pub dn: String,
    pub deleted: bool,
    /// The GUID of its container now: a move changes it.
    pub parent_guid: Option<String>,
    /// The attributes that changed and their whole new values (names as the server spelt
    /// them, without options). An attribute cleared is present with no value.
    pub values: BTreeMap<String, Vec<String>>,
    /// Linked attributes (member) changed value by value: the DNs added and removed.
    pub links: BTreeMap<String, Link>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Link {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// Reads one entry of a DirSync answer. Binary attributes other than the GUIDs are left out
/// (the agent maps none); `None` when the entry has no objectGUID (not an object change).
pub fn delta(entry: &SearchEntry) -> Option<Delta> {
    let guid = entry.bin_attrs.iter().find_map(|(k, v)| {
        k.eq_ignore_ascii_case("objectGUID")
            .then(|| v.first().map(|g| super::object::guid_string(g)))
            .flatten()
    })?;
    let parent_guid = entry.bin_attrs.iter().find_map(|(k, v)| {
        k.eq_ignore_ascii_case("parentGUID")
            .then(|| v.first().map(|g| super::object::guid_string(g)))
            .flatten()
    });
    let mut d = Delta {
        guid,
        dn: entry.dn.clone(),
        parent_guid,
        ..Delta::default()
    };
    for (name, vals) in &entry.attrs {
        let (base, options) = match name.split_once(';') {
            Some((b, o)) => (b, Some(o)),
            None => (name.as_str(), None),
        };
        if is_secret(base) {
            continue;
        }
        match options.map(str::to_ascii_lowercase).as_deref() {
            // INCREMENTAL_VALUES: range=1-1 holds values added, range=0-0 values removed.
            Some("range=1-1") => d
                .links
                .entry(base.to_string())
                .or_default()
                .added
                .extend(vals.iter().cloned()),
            Some("range=0-0") => d
                .links
                .entry(base.to_string())
                .or_default()
                .removed
                .extend(vals.iter().cloned()),
            _ => {
                if base.eq_ignore_ascii_case("isDeleted") {
                    d.deleted = vals.iter().any(|v| v.eq_ignore_ascii_case("TRUE"));
                }
                d.values.insert(base.to_string(), vals.clone());
            }
        }
    }
    Some(d)
}

/// Where the pages of a DirSync read come from: the DC ([`Dc`]), or recorded answers in tests.
pub trait Pages {
    /// One request with `cookie`: the entries, and the answer control's value (`None` when
    /// the server sent none).
    fn page(
        &mut self,
        cookie: &[u8],
    ) -> impl std::future::Future<Output = Result<(Vec<SearchEntry>, Option<Vec<u8>>), OpError>>;
}

/// Why a drain stopped early.
#[derive(Debug)]
pub enum DrainError<E> {
    /// The DC failed or refused (a refusal of the control itself is rc 12 or 53 on Windows).
    Ldap(OpError),
    /// The answer could not be read, or came without the control.
    Answer(String),
    /// The caller's handler failed (the cloud did not take the page): nothing after it was
    /// read, and the cookie it was given was not committed.
    Handler(E),
}

impl<E: std::fmt::Display> std::fmt::Display for DrainError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DrainError::Ldap(e) => write!(f, "the DirSync read failed: {e}"),
            DrainError::Answer(e) => f.write_str(e),
            DrainError::Handler(e) => write!(f, "{e}"),
        }
    }
}

/// What one drain read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drained {
    pub pages: usize,
    pub objects: usize,
    /// The last cookie handed to the handler (the one to resume from).
    pub cookie: Vec<u8>,
    /// The server still had more after [`MAX_PAGES`]: the next run goes on from `cookie`.
    pub cut_short: bool,
}

/// Reads from `cookie` page by page while the server says it has more, handing each page's
/// changes and the cookie that follows them to `handler`, which must commit both together.
/// Stops at the first error; what was handed on before it stays handed on.
pub async fn drain<P: Pages, E>(
    pages: &mut P,
    cookie: &[u8],
    mut handler: impl AsyncFnMut(Vec<Delta>, Answer) -> Result<(), E>,
) -> Result<Drained, DrainError<E>> {
    let mut out = Drained {
        pages: 0,
        objects: 0,
        cookie: cookie.to_vec(),
        cut_short: false,
    };
    loop {
        if out.pages == MAX_PAGES {
            out.cut_short = true;
            return Ok(out);
        }
        let (entries, control) = pages.page(&out.cookie).await.map_err(DrainError::Ldap)?;
        let control = control.ok_or_else(|| {
            DrainError::Answer(
                "the DC answered the DirSync search without its DirSync control; it may not support DirSync"
                    .to_string(),
            )
        })?;
        let answer = parse_answer(&control).map_err(DrainError::Answer)?;
        // Each entry is dropped once read: a page can be a whole directory (Samba's is), and
        // the entries and their deltas are never held side by side.
        let deltas: Vec<Delta> = entries.into_iter().filter_map(|e| delta(&e)).collect();
        out.pages += 1;
        out.objects += deltas.len();
        let more = answer.more;
        let next = answer.cookie.clone();
        handler(deltas, answer).await.map_err(DrainError::Handler)?;
        out.cookie = next;
        if !more {
            return Ok(out);
        }
    }
}

/// A filter no object matches: a user class is never a contact. [`position`] reads with it.
pub const NOTHING: &str = "(&(objectClass=user)(objectClass=contact))";

/// Where the DC's changes stand now, as the cookie a read from here would start from, taken
/// without reading one object: a drain from the empty cookie with a filter no object matches
/// ([`NOTHING`] when `pages` is a [`Dc`]). A full read taken after it and sent with it is
/// whole: a change made during that read is after this cookie, so the next read from it sees
/// it again (sent twice, never missed). Windows may walk the directory in several empty pages
/// (`more`); a walk cut short at [`MAX_PAGES`] leaves an earlier cookie, which is as safe: a
/// cookie from before a change can only show it again.
pub async fn position<P: Pages>(pages: &mut P) -> Result<Vec<u8>, DrainError<String>> {
    let done = drain(pages, b"", async |_deltas: Vec<Delta>, _answer| {
        Ok::<(), String>(())
    })
    .await?;
    Ok(done.cookie)
}

/// DirSync pages from a DC: a subtree search of `base` (the naming context's root, as
/// DirSync requires) with `filter` and `attrs`, each request within `timeout`.
pub struct Dc<'a> {
    ldap: &'a Ldap,
    base: &'a str,
    filter: &'a str,
    attrs: &'a [&'a str],
    timeout: Duration,
    /// The attributes whose values the caller uses (`keeping`); `None`: all of them.
    values: Option<&'a [&'a str]>,
}

/// Drops from `entry` the values of every attribute not named in `keep` (with or without
/// options, `member;range=1-1` is `member`'s), `isDeleted` excepted: what a deletion is read
/// from. The objectGUID and parentGUID (binary) stay.
pub fn keep_values(entry: &mut SearchEntry, keep: &[&str]) {
    entry.attrs.retain(|name, _| {
        let base = name.split_once(';').map_or(name.as_str(), |(b, _)| b);
        base.eq_ignore_ascii_case("isDeleted") || keep.iter().any(|k| k.eq_ignore_ascii_case(base))
    });
}

impl<'a> Dc<'a> {
    /// `Err` (before anything is sent) when `attrs` names a secret attribute or `*`.
    pub fn new(
        ldap: &'a Ldap,
        base: &'a str,
        filter: &'a str,
        attrs: &'a [&'a str],
        timeout: Duration,
    ) -> Result<Dc<'a>, String> {
        Dc::check_attrs(attrs)?;
        Ok(Dc {
            ldap,
            base,
            filter,
            attrs,
            timeout,
            values: None,
        })
    }

    /// Keeps only the values of `names` in each page's entries, dropping the rest as each
    /// entry is read: a caller that reads objects again whole (the export) needs only which
    /// objects changed and how their links did, and a page can be a whole directory (Samba
    /// answers DirSync in one).
    pub fn keeping(mut self, names: &'a [&'a str]) -> Dc<'a> {
        self.values = Some(names);
        self
    }

    /// Refuses an attribute list with a secret attribute in it.
    pub fn check_attrs(attrs: &[&str]) -> Result<(), String> {
        match attrs.iter().find(|a| is_secret(a) || **a == "*") {
            Some(a) => Err(format!(
                "`{a}` cannot be read: the agent never asks AD for a secret attribute or for every attribute"
            )),
            None => Ok(()),
        }
    }
}

impl Pages for Dc<'_> {
    async fn page(
        &mut self,
        cookie: &[u8],
    ) -> Result<(Vec<SearchEntry>, Option<Vec<u8>>), OpError> {
        let mut ldap = self.ldap.clone();
        let (entries, result) = ldap
            .with_controls(vec![request(cookie)])
            .with_timeout(self.timeout)
            .search(self.base, Scope::Subtree, self.filter, self.attrs.to_vec())
            .await
            .and_then(|r| r.success())
            .map_err(|e| OpError::from_ldap(e, self.timeout))?;
        let control = result
            .ctrls
            .into_iter()
            .find(|c| c.1.ctype == OID)
            .and_then(|c| c.1.val);
        let keep = self.values;
        Ok((
            entries
                .into_iter()
                .map(|raw| {
                    let mut e = SearchEntry::construct(raw);
                    if let Some(k) = keep {
                        keep_values(&mut e, k);
                    }
                    e
                })
                .collect(),
            control,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn answer(more: i64, cookie: &[u8]) -> Vec<u8> {
        two_integers_and_bytes(more, 0, cookie)
    }

    #[test]
    fn the_request_carries_the_flags_as_windows_writes_them_and_the_cookie() {
        let c = request(b"COOKIE");
        assert_eq!(c.ctype, "1.2.840.113556.1.4.841");
        assert!(
            c.crit,
            "a DC without DirSync must refuse, not answer a full search"
        );
        let v = c.val.unwrap_or_default();
        // SEQUENCE { INTEGER 0x80002801 as 4-byte two's complement, INTEGER 1048576, "COOKIE" }
        assert_eq!(
            v,
            [
                &[0x30, 0x13, 0x02, 0x04, 0x80, 0x00, 0x28, 0x01][..],
                &[0x02, 0x03, 0x10, 0x00, 0x00],
                &[0x04, 0x06],
                b"COOKIE",
            ]
            .concat()
        );
    }

    #[test]
    fn answers_are_read_and_malformed_ones_refused_in_words() {
        assert_eq!(
            parse_answer(&answer(1, b"next")),
            Ok(Answer {
                more: true,
                cookie: b"next".to_vec()
            })
        );
        assert_eq!(
            parse_answer(&answer(0, b"last")),
            Ok(Answer {
                more: false,
                cookie: b"last".to_vec()
            })
        );
        let good = answer(0, b"c");
        for (bytes, why) in [
            (&b""[..], "not BER"),
            (&[0x04, 0x01, 0x00][..], "not a sequence"),
            (&[0x30, 0x03, 0x02, 0x01, 0x00][..], "not three parts"),
            (&good[..good.len() - 1], "not BER"),
            (&answer(0, b"")[..], "an empty cookie"),
        ] {
            let e = parse_answer(bytes).err().unwrap_or_default();
            assert!(e.contains(why), "{bytes:?}: {e}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(parse_answer(&trailing).is_err());
    }

    /// What the export keeps of a page (`Dc::keeping(["member"])`): a group's member list,
    /// whole or as added and removed values, a deletion, and who the object is; nothing of
    /// the values it reads again whole.
    #[test]
    fn a_page_kept_for_the_export_holds_links_deletions_and_identities_only() {
        let mut group = entry(
            "CN=g,OU=Staff,DC=example,DC=com",
            1,
            &[
                ("description", &["a long description"]),
                ("member", &["CN=a,OU=Staff,DC=example,DC=com"]),
                ("Member;range=1-1", &["CN=b,OU=Staff,DC=example,DC=com"]),
                ("member;range=0-0", &["CN=c,OU=Staff,DC=example,DC=com"]),
            ],
        );
        keep_values(&mut group, &["member"]);
        let d = delta(&group).unwrap_or_else(|| panic!("no delta"));
        assert_eq!(d.values.keys().collect::<Vec<_>>(), ["member"]);
        assert_eq!(d.links["Member"].added, ["CN=b,OU=Staff,DC=example,DC=com"]);
        assert_eq!(
            d.links["member"].removed,
            ["CN=c,OU=Staff,DC=example,DC=com"]
        );
        assert_eq!(d.parent_guid.as_deref().map(str::len), Some(36));
        let mut gone = entry(
            "CN=u\0ADEL:x,CN=Deleted Objects,DC=example,DC=com",
            2,
            &[("isDeleted", &["TRUE"]), ("givenName", &["Ann"])],
        );
        keep_values(&mut gone, &["member"]);
        let d = delta(&gone).unwrap_or_else(|| panic!("no delta"));
        assert!(d.deleted);
        assert!(!d.values.contains_key("givenName"));
        assert!(d.dn.contains("Deleted Objects"));
    }

    fn entry(dn: &str, guid: u8, attrs: &[(&str, &[&str])]) -> SearchEntry {
        SearchEntry {
            dn: dn.to_string(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
            bin_attrs: HashMap::from([
                ("objectGUID".to_string(), vec![vec![guid; 16]]),
                ("parentGUID".to_string(), vec![vec![0xaa; 16]]),
            ]),
        }
    }

    /// Entries as Samba 4.17 and Windows send them with INCREMENTAL_VALUES (recorded shapes).
    #[test]
    fn entries_become_changes_with_memberships_value_by_value_and_no_secret() {
        let group = entry(
            "CN=Staff All,OU=Staff,DC=example,DC=com",
            1,
            &[
                ("member;range=1-1", &["CN=Ann,OU=Staff,DC=example,DC=com"]),
                ("member;range=0-0", &["CN=Bob,OU=Staff,DC=example,DC=com"]),
                ("name", &["Staff All"]),
            ],
        );
        let d = delta(&group).unwrap_or_default();
        assert_eq!(d.guid, "01010101-0101-0101-0101-010101010101");
        assert_eq!(
            d.parent_guid.as_deref(),
            Some("aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa")
        );
        assert_eq!(
            d.links.get("member"),
            Some(&Link {
                added: vec!["CN=Ann,OU=Staff,DC=example,DC=com".into()],
                removed: vec!["CN=Bob,OU=Staff,DC=example,DC=com".into()],
            })
        );
        assert!(!d.deleted);
        assert_eq!(d.values.get("name"), Some(&vec!["Staff All".to_string()]));

        let gone = entry(
            "CN=Ann\\0ADEL:0101,CN=Deleted Objects,DC=example,DC=com",
            2,
            &[("isDeleted", &["TRUE"]), ("unicodePwd", &["leak"])],
        );
        let d = delta(&gone).unwrap_or_default();
        assert!(d.deleted);
        assert!(
            !d.values.contains_key("unicodePwd"),
            "a secret attribute is never kept, even when a server sends it"
        );
        let mut no_guid = entry("CN=x", 3, &[]);
        no_guid.bin_attrs.clear();
        assert_eq!(delta(&no_guid), None);
    }

    #[test]
    fn no_secret_attribute_can_be_asked_for() {
        for a in SECRET_ATTRIBUTES {
            assert!(Dc::check_attrs(&["sAMAccountName", a]).is_err(), "{a}");
            assert!(is_secret(&format!("{};binary", a.to_uppercase())), "{a}");
        }
        assert!(Dc::check_attrs(&["*"]).is_err());
        assert!(Dc::check_attrs(&["sAMAccountName", "member", "mail"]).is_ok());
    }

    /// Recorded pages: the server says "more" twice; every page is handed on with its own
    /// cookie, in order, and the last cookie is where the next run resumes.
    struct Recorded {
        pages: Vec<(Vec<SearchEntry>, Option<Vec<u8>>)>,
        asked: Vec<Vec<u8>>,
    }

    impl Pages for Recorded {
        async fn page(
            &mut self,
            cookie: &[u8],
        ) -> Result<(Vec<SearchEntry>, Option<Vec<u8>>), OpError> {
            self.asked.push(cookie.to_vec());
            if self.pages.is_empty() {
                return Err(OpError::Connection("no more recorded pages".into()));
            }
            Ok(self.pages.remove(0))
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
            .block_on(f)
    }

    #[test]
    fn the_loop_reads_while_the_server_says_more_and_hands_each_cookie_on_with_its_page() {
        let mut rec = Recorded {
            pages: vec![
                (vec![entry("CN=a", 1, &[])], Some(answer(1, b"c1"))),
                (
                    vec![entry("CN=b", 2, &[]), entry("CN=c", 3, &[])],
                    Some(answer(1, b"c2")),
                ),
                (vec![], Some(answer(0, b"c3"))),
            ],
            asked: vec![],
        };
        let mut handed = Vec::new();
        let done = block_on(drain(&mut rec, b"c0", |d: Vec<Delta>, a: Answer| {
            handed.push((d.len(), a.cookie));
            async { Ok::<(), String>(()) }
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            rec.asked,
            vec![b"c0".to_vec(), b"c1".to_vec(), b"c2".to_vec()]
        );
        assert_eq!(
            handed,
            vec![
                (1, b"c1".to_vec()),
                (2, b"c2".to_vec()),
                (0, b"c3".to_vec())
            ]
        );
        assert_eq!(done.pages, 3);
        assert_eq!(done.objects, 3);
        assert_eq!(done.cookie, b"c3");
        assert!(!done.cut_short);
    }

    #[test]
    fn the_position_is_the_last_cookie_of_a_walk_and_nothing_when_the_server_fails() {
        // Windows may walk in several pages that hold nothing.
        let mut rec = Recorded {
            pages: vec![
                (vec![], Some(answer(1, b"p1"))),
                (vec![], Some(answer(1, b"p2"))),
                (vec![], Some(answer(0, b"p3"))),
            ],
            asked: vec![],
        };
        let c = block_on(position(&mut rec)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c, b"p3");
        assert_eq!(
            rec.asked,
            vec![b"".to_vec(), b"p1".to_vec(), b"p2".to_vec()]
        );
        // A walk that fails half way gives no position, never the half-way cookie.
        let mut broken = Recorded {
            pages: vec![(vec![], Some(answer(1, b"p1")))],
            asked: vec![],
        };
        assert!(matches!(
            block_on(position(&mut broken)),
            Err(DrainError::Ldap(_))
        ));
    }

    #[test]
    fn a_page_the_handler_refuses_stops_the_loop_and_its_cookie_is_not_taken() {
        let mut rec = Recorded {
            pages: vec![
                (vec![entry("CN=a", 1, &[])], Some(answer(1, b"c1"))),
                (vec![entry("CN=b", 2, &[])], Some(answer(1, b"c2"))),
                (vec![], Some(answer(0, b"c3"))),
            ],
            asked: vec![],
        };
        let mut n = 0;
        let r = block_on(drain(&mut rec, b"c0", |_d, _a| {
            n += 1;
            let fail = n == 2;
            async move {
                if fail {
                    Err("the cloud is away".to_string())
                } else {
                    Ok(())
                }
            }
        }));
        assert!(matches!(r, Err(DrainError::Handler(ref e)) if e == "the cloud is away"));
        assert_eq!(rec.asked.len(), 2, "nothing is read after a refused page");

        // A server that answers without the control is not taken for "nothing changed".
        let mut bare = Recorded {
            pages: vec![(vec![entry("CN=a", 1, &[])], None)],
            asked: vec![],
        };
        let r = block_on(drain(&mut bare, b"", |_d, _a| async {
            Ok::<(), String>(())
        }));
        assert!(
            matches!(r, Err(DrainError::Answer(ref e)) if e.contains("without its DirSync control"))
        );
    }
}
