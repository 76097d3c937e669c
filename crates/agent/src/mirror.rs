//! The agent's copy of the cloud directory (what AD should hold) and the AD objects it manages,
//! and folding a run of the cloud's changes into it. Pure: no AD, no cloud, no disk. The fold
//! says what a run has to look at in AD (`Work`); `sync` decides the operations.

use ad_sync_core::cloud::api::{AdLink, Change, ChangeBody, MemberType, User};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// A cloud user as the agent last heard of it, and the AD object it manages for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserRec {
    pub user: User,
    /// A password change was seen for this user (the password itself is never kept). Until one
    /// is, the AD account stays disabled: AD accounts are not enabled without a password.
    pub password_set: bool,
    /// objectGUID of the AD account, once created or adopted.
    pub guid: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupRec {
    pub id: String,
    pub name: String,
    pub guid: Option<Vec<u8>>,
    /// The AD groups the cloud linked this group to (by an import), one per domain.
    pub links: Vec<AdLink>,
}

/// A direct membership by ids: (group id, member type, member id).
pub type Edge = (String, MemberType, String);

/// The cloud directory as the agent holds it for a run. Loaded whole (`State::load`) or, for a
/// run of changes, only what those changes touch (`State::load_for`): every group and nesting,
/// the users the changes name, and the users of every group whose AD members the run compares
/// whole. `others` stands for the rest: the objectGUIDs the agent manages for objects not
/// loaded, so that what is "managed" means the same in both.
#[derive(Debug, Clone, Default)]
pub struct Mirror {
    pub users: BTreeMap<String, UserRec>,
    pub groups: BTreeMap<String, GroupRec>,
    pub edges: BTreeSet<Edge>,
    /// The last change folded in.
    pub cursor: i64,
    /// objectGUIDs of managed objects that are not loaded in this mirror (empty when whole).
    pub others: HashSet<[u8; 16]>,
}

/// What a run of changes needs from the state to be planned as it would be on the whole
/// directory (`State::load_for` reads it).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// Users named by a change (upserted, removed, a password, a member).
    pub users: BTreeSet<String>,
    /// Groups named by a change (upserted, removed, a membership's group or member group).
    pub groups: BTreeSet<String>,
    /// Groups whose AD members the run compares whole (upserted or removed; in `match` mode
    /// every group named): their members are loaded. A group only a membership change names
    /// has only the members it names compared (`Work::delta`), unless it is not in AD yet.
    pub whole: BTreeSet<String>,
}

impl Needs {
    /// What `changes` need; `match_mode`: every group they name is compared whole (its
    /// nested groups' users are its direct members, which no single change names).
    pub fn of(changes: &[Change], match_mode: bool) -> Needs {
        let mut n = Needs::default();
        for c in changes {
            match &c.body {
                ChangeBody::UserUpsert { user } => {
                    n.users.insert(user.id.clone());
                }
                ChangeBody::UserRemove { id, .. } | ChangeBody::UserPassword { id, .. } => {
                    n.users.insert(id.clone());
                }
                ChangeBody::GroupUpsert { group } => {
                    n.groups.insert(group.id.clone());
                    n.whole.insert(group.id.clone());
                }
                ChangeBody::GroupRemove { id, .. } => {
                    n.groups.insert(id.clone());
                    n.whole.insert(id.clone());
                }
                ChangeBody::MembershipAdd(m) | ChangeBody::MembershipRemove(m) => {
                    n.groups.insert(m.group_id.clone());
                    match m.member_type {
                        MemberType::User => n.users.insert(m.member_id.clone()),
                        MemberType::Group => n.groups.insert(m.member_id.clone()),
                    };
                }
            }
        }
        if match_mode {
            n.whole.extend(n.groups.iter().cloned());
        }
        n
    }
}

/// What one object in AD has to be brought to, and which changes asked for it (their results
/// are that object's result).
#[derive(Debug, Default)]
pub struct Work {
    pub users: BTreeSet<String>,
    pub groups: BTreeSet<String>,
    /// Users the cloud disconnected, as they were (their AD object gets the disconnection
    /// policy).
    pub removed_users: Vec<UserRec>,
    pub removed_groups: Vec<GroupRec>,
    /// Sealed passwords by user id (`None`: the cloud had none sealed for this agent).
    pub passwords: HashMap<String, Option<String>>,
    /// The seq of each user's last password change (the envelope is bound to it).
    pub password_seqs: HashMap<String, i64>,
    /// Users whose AD lockout is to be cleared (per `sync_account_locked_out_status`).
    pub unlock: BTreeSet<String>,
    /// Which change seqs each object answers for.
    pub seqs: HashMap<ObjKey, Vec<i64>>,
    /// Changes with nothing to do in AD, and why (answered as skipped).
    pub skipped: Vec<(i64, String)>,
    /// Every seq folded, in order.
    pub all_seqs: Vec<i64>,
    /// For each group a membership change named, the members those changes named.
    pub named_members: BTreeMap<String, BTreeSet<(MemberType, String)>>,
    /// Groups whose AD members are compared whole: upserted, containing a removed group, or
    /// not in AD yet when a membership change named them.
    pub whole_groups: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjKey {
    User(String),
    Group(String),
    Password(String),
}

impl std::fmt::Display for ObjKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ObjKey::User(id) => write!(f, "user:{id}"),
            ObjKey::Group(id) => write!(f, "group:{id}"),
            ObjKey::Password(id) => write!(f, "password:{id}"),
        }
    }
}

impl Work {
    fn answer(&mut self, key: ObjKey, seq: i64) {
        self.seqs.entry(key).or_default().push(seq);
    }

    /// The members whose membership of `group` a run compares, when only those: the group is
    /// in AD and only membership changes named it. `None`: all its members.
    pub fn delta(&self, group: &str) -> Option<&BTreeSet<(MemberType, String)>> {
        if self.whole_groups.contains(group) {
            None
        } else {
            self.named_members.get(group)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
            && self.groups.is_empty()
            && self.removed_users.is_empty()
            && self.removed_groups.is_empty()
            && self.passwords.is_empty()
    }
}

impl Mirror {
    /// Whether this objectGUID is one the agent manages for an object not loaded here.
    pub fn manages_other(&self, guid: &[u8]) -> bool {
        <[u8; 16]>::try_from(guid).is_ok_and(|g| self.others.contains(&g))
    }

    /// How many objects the agent manages (loaded or not): what the deletion budget's
    /// percentage is of.
    pub fn managed_count(&self) -> usize {
        self.users.values().filter(|u| u.guid.is_some()).count()
            + self.groups.values().filter(|g| g.guid.is_some()).count()
            + self.others.len()
    }

    /// Folds changes in order. `unlock_on_any_update` is `!sync_account_locked_out_status`:
    /// any update of an unlocked cloud user clears the AD lockout; otherwise only an explicit
    /// unlock (locked, then not) does.
    pub fn fold(&mut self, changes: &[Change], unlock_on_any_update: bool, work: &mut Work) {
        for c in changes {
            work.all_seqs.push(c.seq);
            self.cursor = self.cursor.max(c.seq);
            match &c.body {
                ChangeBody::UserUpsert { user } => {
                    let prev = self.users.get(&user.id);
                    let was_locked = prev.is_some_and(|p| p.user.locked);
                    let rec = UserRec {
                        user: user.clone(),
                        password_set: prev.is_some_and(|p| p.password_set),
                        guid: prev.and_then(|p| p.guid.clone()),
                    };
                    if !user.locked && (unlock_on_any_update || was_locked) {
                        work.unlock.insert(user.id.clone());
                    }
                    if user.locked {
                        work.unlock.remove(&user.id);
                    }
                    self.users.insert(user.id.clone(), rec);
                    work.users.insert(user.id.clone());
                    work.answer(ObjKey::User(user.id.clone()), c.seq);
                }
                ChangeBody::UserRemove { id, username } => match self.users.remove(id) {
                    Some(rec) => {
                        work.users.remove(id);
                        work.unlock.remove(id);
                        work.passwords.remove(id);
                        work.password_seqs.remove(id);
                        let member_of: Vec<Edge> = self
                            .edges
                            .iter()
                            .filter(|(_, t, m)| *t == MemberType::User && m == id)
                            .cloned()
                            .collect();
                        for e in member_of {
                            self.edges.remove(&e);
                        }
                        if rec.guid.is_some() {
                            work.removed_users.push(rec);
                        }
                        work.answer(ObjKey::User(id.clone()), c.seq);
                    }
                    None => work
                        .skipped
                        .push((c.seq, format!("user {username} was never synced"))),
                },
                ChangeBody::UserPassword {
                    id,
                    username,
                    sealed_password,
                } => match self.users.get_mut(id) {
                    Some(rec) => {
                        rec.password_set = true;
                        work.users.insert(id.clone());
                        work.passwords.insert(id.clone(), sealed_password.clone());
                        work.password_seqs.insert(id.clone(), c.seq);
                        // Only the last password counts; earlier ones answer with it.
                        work.answer(ObjKey::Password(id.clone()), c.seq);
                    }
                    None => work.skipped.push((
                        c.seq,
                        format!("user {username} is not in the directory any more"),
                    )),
                },
                ChangeBody::GroupUpsert { group } => {
                    let guid = self.groups.get(&group.id).and_then(|g| g.guid.clone());
                    self.groups.insert(
                        group.id.clone(),
                        GroupRec {
                            id: group.id.clone(),
                            name: group.name.clone(),
                            guid,
                            links: group.links.clone(),
                        },
                    );
                    work.groups.insert(group.id.clone());
                    work.whole_groups.insert(group.id.clone());
                    work.answer(ObjKey::Group(group.id.clone()), c.seq);
                }
                ChangeBody::GroupRemove { id, name } => match self.groups.remove(id) {
                    Some(rec) => {
                        work.groups.remove(id);
                        let touching: Vec<Edge> = self
                            .edges
                            .iter()
                            .filter(|(g, t, m)| g == id || (*t == MemberType::Group && m == id))
                            .cloned()
                            .collect();
                        for e in touching {
                            // A group that contained this one now has other members.
                            if e.0 != *id {
                                work.groups.insert(e.0.clone());
                                work.whole_groups.insert(e.0.clone());
                            }
                            self.edges.remove(&e);
                        }
                        if rec.guid.is_some() {
                            work.removed_groups.push(rec);
                        }
                        work.answer(ObjKey::Group(id.clone()), c.seq);
                    }
                    None => work
                        .skipped
                        .push((c.seq, format!("group {name} was never synced"))),
                },
                ChangeBody::MembershipAdd(m) | ChangeBody::MembershipRemove(m) => {
                    let add = matches!(c.body, ChangeBody::MembershipAdd(_));
                    let member_known = match m.member_type {
                        MemberType::User => self.users.contains_key(&m.member_id),
                        MemberType::Group => self.groups.contains_key(&m.member_id),
                    };
                    if !self.groups.contains_key(&m.group_id) || (add && !member_known) {
                        work.skipped.push((
                            c.seq,
                            format!(
                                "{} or {} is not in the directory any more",
                                m.group, m.member
                            ),
                        ));
                        continue;
                    }
                    // A group AD has is compared for the members named; one not in AD yet
                    // (never created, or not yet) gets all its members when it is made.
                    if self
                        .groups
                        .get(&m.group_id)
                        .is_some_and(|g| g.guid.is_some())
                    {
                        work.named_members
                            .entry(m.group_id.clone())
                            .or_default()
                            .insert((m.member_type, m.member_id.clone()));
                    } else {
                        work.whole_groups.insert(m.group_id.clone());
                    }
                    let edge = (m.group_id.clone(), m.member_type, m.member_id.clone());
                    if add {
                        self.edges.insert(edge);
                    } else {
                        self.edges.remove(&edge);
                    }
                    work.groups.insert(m.group_id.clone());
                    work.answer(ObjKey::Group(m.group_id.clone()), c.seq);
                }
            }
        }
    }

    /// Records the AD object that `key` (a user or a group) manages; a password key has none.
    pub fn set_guid(&mut self, key: &ObjKey, guid: Vec<u8>) {
        let slot = match key {
            ObjKey::User(id) => self.users.get_mut(id).map(|u| &mut u.guid),
            ObjKey::Group(id) => self.groups.get_mut(id).map(|g| &mut g.guid),
            ObjKey::Password(_) => None,
        };
        if let Some(slot) = slot {
            *slot = Some(guid);
        }
    }

    /// Groups that contain `group` directly or through nesting (not `group` itself).
    pub fn ancestors(&self, group: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut todo = vec![group.to_string()];
        while let Some(g) = todo.pop() {
            for (parent, t, m) in &self.edges {
                if *t == MemberType::Group && *m == g && out.insert(parent.clone()) {
                    todo.push(parent.clone());
                }
            }
        }
        out.remove(group);
        out
    }

    /// The members a managed group should have in AD, by (type, id). `minimal`: its direct
    /// members (users and nested groups; AD's nesting gives the rest). `match`: also every user
    /// of every group nested in it, as direct members.
    pub fn desired_members(&self, group: &str, match_mode: bool) -> BTreeSet<(MemberType, String)> {
        let direct = |g: &str| -> Vec<(MemberType, String)> {
            self.edges
                .range((g.to_string(), MemberType::User, String::new())..)
                .take_while(|(gg, _, _)| gg == g)
                .map(|(_, t, m)| (*t, m.clone()))
                .collect()
        };
        let mut out: BTreeSet<(MemberType, String)> = direct(group).into_iter().collect();
        if match_mode {
            let mut seen = BTreeSet::from([group.to_string()]);
            let mut todo: Vec<String> = out
                .iter()
                .filter(|(t, _)| *t == MemberType::Group)
                .map(|(_, m)| m.clone())
                .collect();
            while let Some(g) = todo.pop() {
                if !seen.insert(g.clone()) {
                    continue;
                }
                for (t, m) in direct(&g) {
                    match t {
                        MemberType::User => {
                            out.insert((t, m));
                        }
                        MemberType::Group => todo.push(m),
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ad_sync_core::cloud::api::{Group, Membership};

    fn user(id: &str, name: &str, locked: bool) -> ChangeBody {
        ChangeBody::UserUpsert {
            user: User {
                id: id.into(),
                username: name.into(),
                given_name: "A".into(),
                surname: "B".into(),
                email: None,
                suspended: false,
                locked,
                display_name: None,
                links: Vec::new(),
            },
        }
    }

    fn member(g: &str, t: MemberType, m: &str, add: bool) -> ChangeBody {
        let m = Membership {
            group_id: g.into(),
            group: g.into(),
            member_id: m.into(),
            member: m.into(),
            member_type: t,
        };
        if add {
            ChangeBody::MembershipAdd(m)
        } else {
            ChangeBody::MembershipRemove(m)
        }
    }

    fn changes(bodies: Vec<ChangeBody>) -> Vec<Change> {
        bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| Change {
                seq: i as i64 + 1,
                at: String::new(),
                body,
            })
            .collect()
    }

    fn group(id: &str) -> ChangeBody {
        ChangeBody::GroupUpsert {
            group: Group {
                id: id.into(),
                name: id.into(),
                links: Vec::new(),
            },
        }
    }

    #[test]
    fn nested_groups_in_minimal_and_match_mode() {
        let mut m = Mirror::default();
        let mut w = Work::default();
        m.fold(
            &changes(vec![
                user("u1", "ada", false),
                user("u2", "bob", false),
                group("parent"),
                group("child"),
                group("grandchild"),
                member("parent", MemberType::Group, "child", true),
                member("child", MemberType::Group, "grandchild", true),
                member("child", MemberType::User, "u1", true),
                member("grandchild", MemberType::User, "u2", true),
            ]),
            true,
            &mut w,
        );
        let minimal = m.desired_members("parent", false);
        assert_eq!(
            minimal,
            BTreeSet::from([(MemberType::Group, "child".to_string())])
        );
        let matched = m.desired_members("parent", true);
        assert_eq!(
            matched,
            BTreeSet::from([
                (MemberType::User, "u1".to_string()),
                (MemberType::User, "u2".to_string()),
                (MemberType::Group, "child".to_string()),
            ])
        );
        assert_eq!(
            m.ancestors("grandchild"),
            BTreeSet::from(["child".to_string(), "parent".to_string()])
        );
        assert_eq!(w.all_seqs.len(), 9);
        assert_eq!(m.cursor, 9);
    }

    #[test]
    fn unlock_follows_the_locked_out_status_setting() {
        for (any_update, expect_after_edit) in [(true, true), (false, false)] {
            let mut m = Mirror::default();
            let mut w = Work::default();
            m.fold(&changes(vec![user("u1", "ada", false)]), any_update, &mut w);
            // An edit of an unlocked user: unlocks only when any update may.
            let mut w = Work::default();
            m.fold(
                &changes(vec![user("u1", "ada2", false)]),
                any_update,
                &mut w,
            );
            assert_eq!(w.unlock.contains("u1"), expect_after_edit);
            // Locked, then unlocked: an explicit unlock always unlocks.
            let mut w = Work::default();
            m.fold(
                &changes(vec![user("u1", "ada2", true), user("u1", "ada2", false)]),
                any_update,
                &mut w,
            );
            assert!(w.unlock.contains("u1"));
            // Locked last: nothing to unlock.
            let mut w = Work::default();
            m.fold(&changes(vec![user("u1", "ada2", true)]), any_update, &mut w);
            assert!(!w.unlock.contains("u1"));
        }
    }

    #[test]
    fn removing_a_user_drops_its_memberships_and_reports_the_ad_object() {
        let mut m = Mirror::default();
        let mut w = Work::default();
        m.fold(
            &changes(vec![
                user("u1", "ada", false),
                group("g"),
                member("g", MemberType::User, "u1", true),
            ]),
            true,
            &mut w,
        );
        if let Some(u) = m.users.get_mut("u1") {
            u.guid = Some(vec![1; 16]);
        }
        let mut w = Work::default();
        m.fold(
            &[Change {
                seq: 4,
                at: String::new(),
                body: ChangeBody::UserRemove {
                    id: "u1".into(),
                    username: "ada".into(),
                },
            }],
            true,
            &mut w,
        );
        assert!(m.edges.is_empty());
        assert_eq!(w.removed_users.len(), 1);
        assert!(w.users.is_empty());
        // A removal of a user never synced has nothing to do.
        let mut w = Work::default();
        m.fold(
            &[Change {
                seq: 5,
                at: String::new(),
                body: ChangeBody::UserRemove {
                    id: "u9".into(),
                    username: "zed".into(),
                },
            }],
            true,
            &mut w,
        );
        assert_eq!(w.skipped.len(), 1);
    }
}
