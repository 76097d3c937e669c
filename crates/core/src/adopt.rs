//! Where the agent may write, and which existing AD objects it may take over (adopt) for a
//! cloud user or group of the same name, or one an administrator linked to it by importing
//! AD into the cloud. Pure: the agent's planner, the preview (`sync.preview`) and the import
//! all decide with these rules, so what the preview promises is what the run does.

use crate::directory::object::Obj;
use crate::dn::Dn;
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
    /// adminCount=1, critical, built-in, or a direct or primary member of a privileged group.
    Protected(String),
    /// A member of a privileged group through nesting (the DC followed the chain).
    Privileged,
    /// The sync group itself.
    SyncGroup,
}

impl Refusal {
    pub fn is_protected(&self) -> bool {
        matches!(self, Refusal::Protected(_) | Refusal::Privileged)
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
            (Refusal::Privileged, _) => "it is a member of a privileged group through nested groups; the agent never takes over or changes a privileged object".into(),
            (Refusal::SyncGroup, _) => "it is the sync group itself; choose another name for the cloud group".into(),
        }
    }
}

/// What decides an adoption besides the object: the scope, the sync group's objectGUID, the
/// privileged objects (nested membership included) and whether adoption is on for this kind.
pub struct Rules<'a> {
    pub scope: &'a Scope,
    pub sync_group_guid: Option<&'a [u8]>,
    pub privileged: &'a HashSet<Vec<u8>>,
    pub adopt_users: bool,
    pub adopt_groups: bool,
}

impl Rules<'_> {
    /// May `obj` be taken over for the cloud object `id` of this kind? `linked`: an
    /// administrator linked the two by importing AD into the cloud, which stands for the
    /// setting (never for the safety rules).
    pub fn check(&self, kind: Kind, obj: &Obj, id: &str, linked: bool) -> Result<(), Refusal> {
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
        if let Some(why) = &obj.protected {
            return Err(Refusal::Protected(why.clone()));
        }
        if self.privileged.contains(&obj.guid) {
            return Err(Refusal::Privileged);
        }
        let on = match kind {
            Kind::User => self.adopt_users,
            Kind::Group => self.adopt_groups,
        };
        if !on && !linked && obj.marker_id() != Some(id) {
            return Err(Refusal::Off);
        }
        Ok(())
    }
}
