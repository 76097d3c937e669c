//! Where the agent may write, and which existing AD objects it may take over (adopt) for a
//! cloud user or group of the same name, or one an administrator linked to it by importing
//! AD into the cloud. Pure: the agent's planner, the preview (`sync.preview`) and the import
//! all decide with these rules, so what the preview promises is what the run does.

use crate::directory::object::Obj;
use crate::dn::Dn;
use crate::tier0::Tier0;
use std::collections::HashSet;

/// Where the agent may act, and how it talks to the DC: everything the planner needs to know
/// of the domain besides its objects.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The Root User container: managed users live strictly inside it.
    pub root: Dn,
    /// The sync group; new managed groups are created directly in its container.
    pub sync_group: Option<Dn>,
    pub dns_domain: String,
    /// The DC's name, for messages.
    pub host: String,
    /// The connection is encrypted (LDAPS or StartTLS): passwords may be sent.
    pub encrypted: bool,
}

impl Scope {
    /// The containers from a config or answers file, the DC's name from its connect options;
    /// `encrypted` is false until a connection says otherwise. `Err` names the field.
    pub fn from_answers(answers: &crate::answers::Answers) -> Result<Scope, String> {
        let root = Dn::parse(&answers.directory.root_user_dn)
            .map_err(|e| format!("[directory] root_user_dn is not a DN ({})", e.message))?
            .dn;
        let sync_group = match answers.directory.sync_group_dn.as_deref() {
            Some(t) => Some(
                Dn::parse(t)
                    .map_err(|e| format!("[directory] sync_group_dn is not a DN ({})", e.message))?
                    .dn,
            ),
            None => None,
        };
        let dns_domain = root.domain().unwrap_or_default();
        let host = answers.connect_options(Some(&dns_domain)).host;
        Ok(Scope {
            root,
            sync_group,
            dns_domain,
            host,
            encrypted: false,
        })
    }

    pub fn root_text(&self) -> String {
        self.root.to_comma_form()
    }

    /// The domain's naming context (`DC=example,DC=com`), which cloud links name.
    pub fn domain_dn(&self) -> Option<Dn> {
        self.root.domain_dn()
    }

    /// Where managed groups are created: the sync group's own container.
    pub fn group_parent(&self) -> Option<Dn> {
        self.sync_group.as_ref().and_then(Dn::parent)
    }

    /// True when `dn` is strictly inside the Root User container.
    pub fn under_root(&self, dn: &Option<Dn>) -> bool {
        dn.as_ref()
            .is_some_and(|d| d.ends_with(&self.root) && !d.same_as(&self.root))
    }

    /// True when `dn` is directly in the managed groups' container.
    pub fn in_group_parent(&self, dn: &Option<Dn>) -> bool {
        match (dn.as_ref().and_then(Dn::parent), self.group_parent()) {
            (Some(p), Some(gp)) => p.same_as(&gp),
            _ => false,
        }
    }

    /// Where a managed group may be: directly in the sync group's container, or anywhere
    /// inside the Root User container (where an imported group may live).
    pub fn group_home(&self, dn: &Option<Dn>) -> bool {
        self.in_group_parent(dn) || self.under_root(dn)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Group,
}

/// Why an existing AD object is not taken over. `Protected` and `Privileged` are the ones the
/// preview counts as protected; the rest are collisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Adoption is off for this kind (`[sync] adopt_existing_users` / `_groups`).
    Off,
    /// It carries the marker of another cloud object.
    ManagedForOther(String),
    /// A group where a user is wanted, a computer, a contact...
    WrongKind,
    Distribution,
    Outside,
    /// Tier 0 (`tier0::Tier0::why`): protected by its entry, privileged by what it or a group
    /// it is in may do, or not provably neither.
    Protected(String),
    /// The sync group itself.
    SyncGroup,
    /// Another cloud object takes it over (in this run, or the agent manages it already).
    Claimed,
    /// The cloud links it to this object, but this agent's import never made that link, and
    /// adoption is off: a link the cloud made alone is no consent.
    Unconsented,
}

/// How a cloud object points at an existing AD object besides its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// No link: found by name, or by the agent's marker.
    None,
    /// A link this agent's own import made (recorded in its state): stands for the setting.
    Imported,
    /// A link the agent never made: honoured only as adoption is.
    Unconsented,
}

impl Refusal {
    pub fn is_protected(&self) -> bool {
        matches!(self, Refusal::Protected(_))
    }

    /// The reason in words, ending with what to do.
    pub fn words(&self, kind: Kind, scope: &Scope) -> String {
        match (self, kind) {
            (Refusal::Off, Kind::User) => "it is not managed by ad-sync, and taking over existing accounts is off ([sync] adopt_existing_users). Turn it on to let the cloud manage this account, or rename one of them".into(),
            (Refusal::Off, Kind::Group) => "it is not managed by ad-sync, and taking over existing groups is off ([sync] adopt_existing_groups). Turn it on to let the cloud manage this group, or rename one of them".into(),
            (Refusal::ManagedForOther(id), _) => format!("it is managed for another cloud object ({id}); rename or remove one of them"),
            (Refusal::WrongKind, Kind::User) => "it is not a user account (a group, computer or contact of that name); rename one of them".into(),
            (Refusal::WrongKind, Kind::Group) => "it is not a group; rename one of them".into(),
            (Refusal::Distribution, _) => "it is a distribution group, which cannot grant access; the agent manages security groups only. Rename one of them".into(),
            (Refusal::Outside, Kind::User) => format!("it is outside the Root User container ({}); the agent never writes there. Move it into the container to let it be taken over", scope.root_text()),
            (Refusal::Outside, Kind::Group) => format!("it is neither in the sync group's container nor inside the Root User container ({}); the agent never writes there", scope.root_text()),
            (Refusal::Protected(why), _) => format!("{why}; the agent never takes over or changes a protected object"),
            (Refusal::SyncGroup, _) => "it is the sync group itself; choose another name for the cloud group".into(),
            (Refusal::Claimed, _) => "another cloud object takes it over (by its name, or linked by an import); rename one of them".into(),
            (Refusal::Unconsented, _) => "the cloud links it to this AD object, but this agent's import never made that link, and taking over existing objects is off. Import it with `ad-sync-agent import` on this server if it should be managed".into(),
        }
    }
}

/// What decides an adoption besides the object: the scope, the sync group's objectGUID, the
/// Tier 0 objects and whether adoption is on for this kind.
pub struct Rules<'a> {
    pub scope: &'a Scope,
    pub sync_group_guid: Option<&'a [u8]>,
    pub tier0: &'a Tier0,
    pub adopt_users: bool,
    pub adopt_groups: bool,
}

impl Rules<'_> {
    /// May `obj` be taken over for the cloud object `id` of this kind? `link`: how the cloud
    /// points at it; only a link this agent's import made stands for the setting (never for
    /// the safety rules).
    pub fn check(&self, kind: Kind, obj: &Obj, id: &str, link: Link) -> Result<(), Refusal> {
        if let Some(other) = obj.marker_id()
            && other != id
        {
            return Err(Refusal::ManagedForOther(other.to_string()));
        }
        match kind {
            Kind::User if !obj.is_user || obj.is_group => return Err(Refusal::WrongKind),
            Kind::Group if !obj.is_group => return Err(Refusal::WrongKind),
            Kind::Group if !obj.security => return Err(Refusal::Distribution),
            _ => {}
        }
        if self.sync_group_guid == Some(obj.guid.as_slice()) {
            return Err(Refusal::SyncGroup);
        }
        let inside = match kind {
            Kind::User => self.scope.under_root(&obj.parsed),
            Kind::Group => self.scope.group_home(&obj.parsed),
        };
        if !inside {
            return Err(Refusal::Outside);
        }
        if let Some(why) = self.tier0.why(obj) {
            return Err(Refusal::Protected(why));
        }
        let on = match kind {
            Kind::User => self.adopt_users,
            Kind::Group => self.adopt_groups,
        };
        if !on && link != Link::Imported && obj.marker_id() != Some(id) {
            return Err(match link {
                Link::Unconsented => Refusal::Unconsented,
                _ => Refusal::Off,
            });
        }
        Ok(())
    }
}

/// What the first sync would do with each kind: how many objects it would create, take over,
/// leave alone because they are managed already, and refuse (with names and why).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub create: usize,
    pub adopt: usize,
    /// Already managed by ad-sync for this cloud object (an earlier install's marker).
    pub managed: usize,
    /// (name, why): an existing object of the name that is not taken over.
    pub collisions: Vec<(String, String)>,
    /// Of the collisions, those refused only because adoption is off for the kind.
    pub adoptable: usize,
    /// (name, why): an existing protected or privileged object of the name.
    pub protected: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Preview {
    pub users: Counts,
    /// `None`: no sync group is configured, so groups are not synced.
    pub groups: Option<Counts>,
}

/// A cloud object as the preview sees it: id, name and its links.
pub struct CloudObject<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub links: &'a [crate::cloud::api::AdLink],
}

impl<'a> From<&'a crate::cloud::api::DirectoryEntry> for CloudObject<'a> {
    fn from(e: &'a crate::cloud::api::DirectoryEntry) -> Self {
        CloudObject {
            id: &e.id,
            name: &e.name,
            links: &e.links,
        }
    }
}

/// The first sync's decisions for each cloud user and group against the AD objects of the
/// domain, by the planner's order: the object carrying the cloud object's marker, else the
/// one an import linked it to, else the one of the same name; then the adoption rules.
pub fn preview(
    users: &[CloudObject],
    groups: &[CloudObject],
    objs: &[Obj],
    rules: &Rules,
) -> Preview {
    use std::collections::HashMap;
    let by_marker: HashMap<&str, &Obj> = objs
        .iter()
        .filter_map(|o| o.marker_id().map(|m| (m, o)))
        .collect();
    let by_guid: HashMap<&[u8], &Obj> = objs.iter().map(|o| (o.guid.as_slice(), o)).collect();
    let by_sam: HashMap<String, &Obj> = objs
        .iter()
        .filter(|o| !o.sam.is_empty())
        .map(|o| (o.sam.to_lowercase(), o))
        .collect();
    let domain = rules.scope.domain_dn();
    let mut claimed: HashSet<&[u8]> = HashSet::new();
    let mut count = |kind: Kind, list: &[CloudObject]| {
        let mut c = Counts::default();
        for x in list {
            if by_marker.contains_key(x.id) {
                c.managed += 1;
                continue;
            }
            let linked = domain
                .as_ref()
                .and_then(|d| crate::cloud::api::link_for(x.links, d))
                .and_then(|l| crate::directory::object::parse_guid_string(&l.guid))
                .and_then(|g| by_guid.get(g.as_slice()).copied());
            let Some(obj) = linked.or_else(|| by_sam.get(&x.name.to_lowercase()).copied()) else {
                c.create += 1;
                continue;
            };
            let checked = rules
                // The preview has no agent state to tell its own links from the cloud's: it
                // counts a link as the import's (the run refuses one the agent never made).
                .check(
                    kind,
                    obj,
                    x.id,
                    if linked.is_some() {
                        Link::Imported
                    } else {
                        Link::None
                    },
                )
                .and_then(|()| {
                    claimed
                        .insert(obj.guid.as_slice())
                        .then_some(())
                        .ok_or(Refusal::Claimed)
                });
            match checked {
                Ok(()) => c.adopt += 1,
                Err(r) if r.is_protected() => c
                    .protected
                    .push((x.name.to_string(), r.words(kind, rules.scope))),
                Err(r) => {
                    if r == Refusal::Off {
                        c.adoptable += 1;
                    }
                    c.collisions
                        .push((x.name.to_string(), r.words(kind, rules.scope)))
                }
            }
        }
        c
    };
    Preview {
        users: count(Kind::User, users),
        groups: rules
            .scope
            .group_parent()
            .map(|_| count(Kind::Group, groups)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::object::Obj;

    fn dn(t: &str) -> Dn {
        Dn::parse(t)
            .unwrap_or_else(|e| panic!("{t}: {}", e.message))
            .dn
    }

    fn obj(sam: &str, dn_text: &str, guid: u8) -> Obj {
        Obj {
            guid: vec![guid; 16],
            parsed: Some(dn(dn_text)),
            dn: dn_text.into(),
            sam: sam.into(),
            is_user: true,
            ..Obj::default()
        }
    }

    #[test]
    fn the_preview_sorts_each_cloud_object_as_the_planner_would() {
        let scope = Scope {
            root: dn("OU=Staff,DC=example,DC=com"),
            sync_group: Some(dn("CN=Cloud Groups,OU=Staff,DC=example,DC=com")),
            dns_domain: "example.com".into(),
            host: "dc".into(),
            encrypted: true,
        };
        let mut admin = obj("admin", "CN=admin,OU=Staff,DC=example,DC=com", 2);
        admin.protected = Some("it is protected (adminCount=1)".into());
        let mut mine = obj("old", "CN=old,OU=Staff,DC=example,DC=com", 4);
        mine.marker = Some("ad-sync:u-old".into());
        let mut eng = obj(
            "Engineering",
            "CN=Engineering,OU=Staff,DC=example,DC=com",
            5,
        );
        (eng.is_user, eng.is_group, eng.security) = (false, true, true);
        let mut list = obj("List", "CN=List,OU=Staff,DC=example,DC=com", 6);
        (list.is_user, list.is_group) = (false, true);
        let objs = vec![
            obj("bob", "CN=bob,OU=Staff,DC=example,DC=com", 1),
            admin,
            obj("svc", "CN=svc,CN=Users,DC=example,DC=com", 3),
            mine,
            eng,
            list,
            obj("nested", "CN=nested,OU=Staff,DC=example,DC=com", 7),
        ];
        let tier0 = Tier0::of([(vec![7u8; 16], "it is a member of IT-Admins".to_string())]);
        let link = [crate::cloud::api::AdLink {
            domain: "DC=example,DC=com".into(),
            guid: crate::directory::object::guid_string(&[1u8; 16]),
        }];
        let u = |id: &'static str, name: &'static str| CloudObject {
            id,
            name,
            links: &[],
        };
        let users = [
            u("u-new", "new"),
            u("u-bob", "BOB"),
            u("u-admin", "admin"),
            u("u-svc", "svc"),
            u("u-old", "renamed-since"),
            u("u-nested", "nested"),
            CloudObject {
                id: "u-robert",
                name: "robert",
                links: &link,
            },
        ];
        let groups = [
            u("g-eng", "Engineering"),
            u("g-list", "List"),
            u("g-ops", "Ops"),
        ];
        for (adopt_on, adopted, collisions) in [(true, 1, 2), (false, 0, 2)] {
            let rules = Rules {
                scope: &scope,
                sync_group_guid: None,
                tier0: &tier0,
                adopt_users: adopt_on,
                adopt_groups: adopt_on,
            };
            let p = preview(&users, &groups, &objs, &rules);
            // bob by name (only with adoption on); robert is linked to bob, whom one cloud
            // user only may take over.
            assert_eq!(p.users.adopt, 1, "{p:?}");
            assert_eq!(p.users.create, 1);
            assert_eq!(p.users.managed, 1);
            // svc is outside the container; bob without adoption, or robert after bob with
            // it, collides.
            assert_eq!(p.users.collisions.len(), collisions, "{p:?}");
            // Without adoption bob alone would be taken over by turning it on.
            assert_eq!(p.users.adoptable, usize::from(!adopt_on), "{p:?}");
            let prot: Vec<&str> = p.users.protected.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(prot, vec!["admin", "nested"]);
            let g = p.groups.unwrap_or_else(|| panic!("groups are synced"));
            assert_eq!((g.create, g.adopt), (1, adopted));
            assert!(
                g.collisions
                    .iter()
                    .any(|(n, why)| n == "List" && why.contains("distribution"))
            );
        }
        let no_groups = Scope {
            sync_group: None,
            ..scope.clone()
        };
        let rules = Rules {
            scope: &no_groups,
            sync_group_guid: None,
            tier0: &tier0,
            adopt_users: false,
            adopt_groups: false,
        };
        assert_eq!(preview(&users, &groups, &objs, &rules).groups, None);
    }
}
