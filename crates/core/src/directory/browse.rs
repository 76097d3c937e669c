//! Browsing the directory for the wizard's pickers: the children of one container, one level
//! at a time, as the administrator opens the tree. Reads only.
//!
//! - One level is read with a one-level search under the simple paged results control (pages
//!   of 500), so no server size limit cuts it short, and stops after `limit` entries (like
//!   ADUC's 2,000 items per folder): `more` then says the list is cut, and a name filter (read
//!   by the server, `name=*text*`) narrows it.
//! - What is offered: organisational units and containers (never the ones AD hides outside
//!   Advanced Features: System, LostAndFound, Program Data…), and for the sync group the groups
//!   too; a group that cannot be the sync group says why (a distribution group, a built-in or
//!   protected one).
//! - Every request has the session's timeout; dropping the future abandons it.

use super::session::{EntryExt, OpError, Session};
use crate::dn::Dn;
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Scope, SearchEntry};

/// Entries per page of a level's search.
const PAGE: i32 = 500;
/// How many children one read shows at most before the list says it is cut (ADUC's default).
pub const LEVEL_LIMIT: usize = 2_000;

/// What a picker offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Offer {
    /// OUs and containers (the Root User container).
    Containers,
    /// OUs, containers and groups (the sync group).
    Groups,
    /// OUs, containers and groups whose members AD as a source sends (the scope's groups):
    /// any security group, built-in and protected ones too, as a scope group only selects
    /// users and nothing is ever written to it.
    ScopeGroups,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Domain,
    OrganizationalUnit,
    Container,
    Group { security: bool },
}

impl Kind {
    pub fn words(self) -> &'static str {
        match self {
            Kind::Domain => "domain",
            Kind::OrganizationalUnit => "organizational unit",
            Kind::Container => "container",
            Kind::Group { security: true } => "security group",
            Kind::Group { security: false } => "distribution group",
        }
    }

    /// Whether it can hold children worth opening.
    pub fn is_container(self) -> bool {
        !matches!(self, Kind::Group { .. })
    }
}

/// One child in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// As the DC gives it (comma form).
    pub dn: String,
    /// Its name (the RDN's value, unescaped).
    pub name: String,
    pub kind: Kind,
    /// Why it cannot be chosen for what the picker offers, when it cannot.
    pub unpickable: Option<String>,
}

/// The children of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    /// The container read (the domain's naming context when none was given).
    pub base: String,
    pub nodes: Vec<Node>,
    /// More children match than were read: the list is cut at the limit.
    pub more: bool,
}

const ATTRS: &[&str] = &[
    "name",
    "objectClass",
    "groupType",
    "isCriticalSystemObject",
    "adminCount",
];

/// The filter for one level: what `offer` shows, never what AD hides outside Advanced
/// Features, and, when `name` is not empty, only names containing it.
pub fn filter(offer: Offer, name: &str) -> String {
    let containers = "(objectClass=organizationalUnit)(objectClass=container)";
    let kinds = match offer {
        Offer::Containers => format!("(|{containers})"),
        Offer::Groups | Offer::ScopeGroups => format!("(|{containers}(objectClass=group))"),
    };
    let name = name.trim();
    let named = if name.is_empty() {
        String::new()
    } else {
        format!("(name=*{}*)", ldap3::ldap_escape(name))
    };
    format!("(&{kinds}(!(showInAdvancedViewOnly=TRUE)){named})")
}

/// What one entry is, and why it cannot be chosen for `offer`.
pub fn node(e: &SearchEntry, offer: Offer) -> Option<Node> {
    let classes = e.all("objectClass");
    let has = |c: &str| classes.iter().any(|v| v.eq_ignore_ascii_case(c));
    let kind = if has("group") {
        let security = e.int("groupType").is_some_and(|t| t & 0x8000_0000 != 0);
        Kind::Group { security }
    } else if has("organizationalUnit") {
        Kind::OrganizationalUnit
    } else if has("domainDNS") {
        Kind::Domain
    } else if has("container") {
        Kind::Container
    } else {
        return None;
    };
    let name = e.first("name").map(str::to_string).or_else(|| {
        Dn::parse(&e.dn)
            .ok()
            .and_then(|p| p.dn.first_value().map(str::to_string))
    })?;
    let critical = e
        .first("isCriticalSystemObject")
        .is_some_and(|v| v.eq_ignore_ascii_case("TRUE"));
    let protected = e.int("adminCount") == Some(1);
    let unpickable = match (offer, kind) {
        (Offer::Containers, Kind::Group { .. }) => Some("a group, not a container".to_string()),
        (Offer::Groups, Kind::Group { security: false }) => Some(
            "a distribution group: it has no security identity, so AD cannot grant access through it; choose a security group".into(),
        ),
        (Offer::Groups, Kind::Group { .. }) if critical => Some(
            "a built-in group of the domain: the agent never nests groups in those; create a group of its own".into(),
        ),
        (Offer::Groups, Kind::Group { .. }) if protected => Some(
            "a protected group (adminCount=1, a member of an administrative group now or before): choose an ordinary security group".into(),
        ),
        (Offer::ScopeGroups, Kind::Group { security: false }) => Some(
            "a distribution group: the scope takes security groups".into(),
        ),
        (Offer::Groups | Offer::ScopeGroups, Kind::Group { .. }) | (Offer::Containers, _) => None,
        (Offer::Groups | Offer::ScopeGroups, _) => Some(format!("a {}, not a group", kind.words())),
    };
    Some(Node {
        dn: e.dn.clone(),
        name,
        kind,
        unpickable,
    })
}

/// Containers first, then groups, each by name as a person sorts them.
fn order(nodes: &mut [Node]) {
    nodes.sort_by_cached_key(|n| (!n.kind.is_container(), n.name.to_lowercase(), n.dn.clone()));
}

/// The domain's naming context, from the RootDSE (readable before and after a logon).
pub async fn naming_context(session: &mut Session) -> Result<String, OpError> {
    let dse = session.read_entry("", &["defaultNamingContext"]).await?;
    dse.as_ref()
        .and_then(|e| e.first("defaultNamingContext"))
        .map(str::to_string)
        .ok_or_else(|| {
            OpError::Connection(
                "the domain controller did not name its domain (defaultNamingContext)".into(),
            )
        })
}

/// The children of `base` that `offer` shows and whose name contains `name`, at most `limit`.
pub async fn level(
    session: &mut Session,
    base: &str,
    offer: Offer,
    name: &str,
    limit: usize,
) -> Result<Level, OpError> {
    let timeout = session.op_timeout();
    let mut ldap = session.handle();
    let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
        Box::new(EntriesOnly::new()),
        Box::new(PagedResults::new(PAGE)),
    ];
    let err = |e| OpError::from_ldap(e, timeout);
    let mut stream = ldap
        .with_timeout(timeout)
        .streaming_search_with(
            adapters,
            base,
            Scope::OneLevel,
            &filter(offer, name),
            ATTRS.to_vec(),
        )
        .await
        .map_err(err)?;
    let mut nodes = Vec::new();
    let mut more = false;
    loop {
        match tokio::time::timeout(timeout, stream.next()).await {
            Ok(Ok(Some(entry))) => {
                if nodes.len() == limit {
                    more = true;
                    break;
                }
                if let Some(n) = node(&SearchEntry::construct(entry), offer) {
                    nodes.push(n);
                }
            }
            Ok(Ok(None)) => break,
            Ok(Err(e)) => return Err(err(e)),
            Err(_) => return Err(OpError::Timeout(timeout)),
        }
    }
    if more {
        // The rest is not wanted: tell the DC to stop sending it.
        let handle = stream.ldap_handle();
        let id = handle.last_id();
        let _ = tokio::time::timeout(timeout, handle.abandon(id)).await;
    } else {
        stream.finish().await.success().map_err(err)?;
    }
    order(&mut nodes);
    Ok(Level {
        base: base.to_string(),
        nodes,
        more,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn entry(dn: &str, attrs: &[(&str, &[&str])]) -> SearchEntry {
        SearchEntry {
            dn: dn.into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect::<HashMap<_, _>>(),
            bin_attrs: HashMap::new(),
        }
    }

    #[test]
    fn the_filter_hides_advanced_objects_and_escapes_the_name() {
        assert_eq!(
            filter(Offer::Containers, ""),
            "(&(|(objectClass=organizationalUnit)(objectClass=container))(!(showInAdvancedViewOnly=TRUE)))"
        );
        let f = filter(Offer::Groups, " a*(b) ");
        assert!(f.contains("(objectClass=group)"), "{f}");
        assert!(f.ends_with("(name=*a\\2a\\28b\\29*))"), "{f}");
    }

    /// Recorded from the test domain (Samba 4.17): what each kind of child looks like.
    #[test]
    fn each_kind_of_child_says_whether_it_can_be_chosen_and_why_not() {
        let ou = entry(
            "OU=Staff,DC=example,DC=com",
            &[
                ("name", &["Staff"]),
                ("objectClass", &["top", "organizationalUnit"]),
            ],
        );
        let users = entry(
            "CN=Users,DC=example,DC=com",
            &[
                ("name", &["Users"]),
                ("objectClass", &["top", "container"]),
                ("isCriticalSystemObject", &["TRUE"]),
            ],
        );
        let security = entry(
            "CN=Cloud Groups,OU=Staff,DC=example,DC=com",
            &[
                ("name", &["Cloud Groups"]),
                ("objectClass", &["top", "group"]),
                ("groupType", &["-2147483646"]),
            ],
        );
        let distribution = entry(
            "CN=Mailing List,OU=Staff,DC=example,DC=com",
            &[
                ("name", &["Mailing List"]),
                ("objectClass", &["top", "group"]),
                ("groupType", &["2"]),
            ],
        );
        let builtin = entry(
            "CN=Domain Users,CN=Users,DC=example,DC=com",
            &[
                ("name", &["Domain Users"]),
                ("objectClass", &["top", "group"]),
                ("groupType", &["-2147483646"]),
                ("isCriticalSystemObject", &["TRUE"]),
            ],
        );
        let protected = entry(
            "CN=Old Admins,OU=Staff,DC=example,DC=com",
            &[
                ("name", &["Old Admins"]),
                ("objectClass", &["top", "group"]),
                ("groupType", &["-2147483646"]),
                ("adminCount", &["1"]),
            ],
        );
        let why = |e: &SearchEntry, o| node(e, o).and_then(|n| n.unpickable);
        assert_eq!(why(&ou, Offer::Containers), None);
        assert_eq!(
            why(&users, Offer::Containers),
            None,
            "a system container can hold users"
        );
        assert!(why(&ou, Offer::Groups).is_some_and(|w| w.contains("not a group")));
        assert_eq!(why(&security, Offer::Groups), None);
        assert!(
            why(&distribution, Offer::Groups).is_some_and(|w| w.contains("distribution group"))
        );
        assert!(why(&builtin, Offer::Groups).is_some_and(|w| w.contains("built-in")));
        // A scope group only selects users: built-in and protected ones may select them,
        // a distribution group may not (the scope's check refuses it the same way).
        assert_eq!(why(&security, Offer::ScopeGroups), None);
        assert_eq!(why(&builtin, Offer::ScopeGroups), None);
        assert!(
            why(&distribution, Offer::ScopeGroups)
                .is_some_and(|w| w.contains("the scope takes security groups"))
        );
        assert!(why(&ou, Offer::ScopeGroups).is_some_and(|w| w.contains("not a group")));
        assert_eq!(why(&protected, Offer::ScopeGroups), None);
        assert!(why(&protected, Offer::Groups).is_some_and(|w| w.contains("adminCount=1")));
        assert_eq!(
            node(&distribution, Offer::Groups).map(|n| n.kind),
            Some(Kind::Group { security: false })
        );
        let person = entry(
            "CN=x,DC=example,DC=com",
            &[("objectClass", &["top", "person", "user"])],
        );
        assert_eq!(
            node(&person, Offer::Groups),
            None,
            "users are never offered"
        );
        // An escaped comma in a name comes back as the name, not the escaped RDN.
        let tricky = entry(
            "OU=Bénéficiaires\\, Zürich,DC=example,DC=com",
            &[("objectClass", &["top", "organizationalUnit"])],
        );
        assert_eq!(
            node(&tricky, Offer::Containers).map(|n| n.name),
            Some("Bénéficiaires, Zürich".to_string())
        );
    }

    #[test]
    fn containers_come_first_then_groups_by_name_as_a_person_sorts_them() {
        let n = |name: &str, kind| Node {
            dn: format!("CN={name}"),
            name: name.into(),
            kind,
            unpickable: None,
        };
        let mut v = vec![
            n("b group", Kind::Group { security: true }),
            n("Zeta", Kind::OrganizationalUnit),
            n("alpha", Kind::Container),
            n("A group", Kind::Group { security: false }),
        ];
        order(&mut v);
        let names: Vec<_> = v.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["alpha", "Zeta", "A group", "b group"]);
    }
}
