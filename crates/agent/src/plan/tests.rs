//! Table tests of the planner on AD objects recorded from the test bed's Samba DC
//! (`recorded.ldif`, read through the same `ad::object` the agent reads a search with). Each
//! case starts from the recorded directory, a scope (OU=Staff, the sync group Cloud Groups,
//! LDAPS) and the default policies, changes what it is about, and lists the operations and
//! outcomes it expects, in plan order.

use super::*;
use crate::ad::{self, Obj};
use crate::mirror::{GroupRec, Mirror, ObjKey, UserRec, Work};
use ad_sync_core::answers::{GroupDisconnection, MembershipSyncType, Sync, UserDisconnection};
use ad_sync_core::cloud::api::{ApplyStatus, MemberType, User};
use ad_sync_core::dn::Dn;
use ad_sync_core::secret::Secret;
use base64::Engine as _;
use std::collections::{HashMap, HashSet};

const STAFF: &str = "OU=Staff,DC=example,DC=com";
const USERS: &str = "CN=Users,DC=example,DC=com";
const SYNC_GROUP: &str = "CN=Cloud Groups,OU=Staff,DC=example,DC=com";

/// The recorded directory, as the agent's search reads it.
pub(crate) fn recorded() -> Vec<Obj> {
    let b64 = |v: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(v)
            .unwrap_or_else(|e| panic!("recorded.ldif: {v}: {e}"))
    };
    let mut out = Vec::new();
    for block in include_str!("recorded.ldif").split("\n\n") {
        let mut e = ldap3::SearchEntry {
            dn: String::new(),
            attrs: HashMap::new(),
            bin_attrs: HashMap::new(),
        };
        for line in block
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (attr, value) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("recorded.ldif: {line}"));
            let (text, bytes) = match value.strip_prefix(": ") {
                Some(b) => {
                    let bytes = b64(b);
                    (String::from_utf8(bytes.clone()).ok(), bytes)
                }
                None => {
                    let t = value.trim_start().to_string();
                    (Some(t.clone()), t.into_bytes())
                }
            };
            if attr == "dn" {
                e.dn = text.unwrap_or_else(|| panic!("recorded.ldif: a DN is not text"));
                continue;
            }
            match text {
                Some(t) => e.attrs.entry(attr.to_string()).or_default().push(t),
                None => e.bin_attrs.entry(attr.to_string()).or_default().push(bytes),
            }
        }
        if !e.dn.is_empty() {
            out.push(ad::object(&e));
        }
    }
    assert_eq!(out.len(), 14, "recorded.ldif holds 14 objects");
    out
}

pub(crate) fn dn(text: &str) -> Dn {
    Dn::parse(text)
        .unwrap_or_else(|e| panic!("{text}: {}", e.message))
        .dn
}

fn user(id: &str, username: &str, given: &str, sn: &str) -> UserRec {
    UserRec {
        user: User {
            id: id.into(),
            username: username.into(),
            given_name: given.into(),
            surname: sn.into(),
            email: None,
            suspended: false,
            locked: false,
            display_name: None,
            links: Vec::new(),
        },
        password_set: false,
        guid: None,
    }
}

fn group(id: &str, name: &str) -> GroupRec {
    GroupRec {
        id: id.into(),
        name: name.into(),
        guid: None,
        links: Vec::new(),
    }
}

/// One case's world: AD (recorded, then changed), the mirror before and after the fold, the
/// work, the policies and the passwords opened for the run.
struct World {
    ad: Vec<Obj>,
    scope: Scope,
    sync_group_in_ad: bool,
    before: Mirror,
    mirror: Mirror,
    work: Work,
    policy: Sync,
    passwords: HashMap<String, Result<Secret, String>>,
    allow: Option<usize>,
    /// Objects in a privileged group through nesting.
    privileged: HashSet<Vec<u8>>,
    /// Disconnections the administrator approved.
    approved: HashSet<ObjKey>,
    /// The objectGUIDs this agent's own import linked.
    consented: HashSet<Vec<u8>>,
    /// Disconnections made within the budget's window before the run.
    spent: usize,
}

impl World {
    fn new() -> World {
        World {
            ad: recorded(),
            scope: Scope {
                root: dn(STAFF),
                sync_group: Some(dn(SYNC_GROUP)),
                dns_domain: "example.com".into(),
                host: "dc1.example.com".into(),
                encrypted: true,
            },
            sync_group_in_ad: true,
            before: Mirror::default(),
            mirror: Mirror::default(),
            work: Work::default(),
            policy: toml::from_str::<Sync>("").unwrap_or_else(|e| panic!("{e}")),
            passwords: HashMap::new(),
            allow: None,
            privileged: HashSet::new(),
            approved: HashSet::new(),
            consented: HashSet::new(),
            spent: 0,
        }
    }

    fn obj(&mut self, sam: &str) -> &mut Obj {
        self.ad
            .iter_mut()
            .find(|o| o.sam == sam)
            .unwrap_or_else(|| panic!("{sam} is not in recorded.ldif"))
    }

    fn guid(&self, sam: &str) -> Vec<u8> {
        self.ad
            .iter()
            .find(|o| o.sam == sam)
            .map(|o| o.guid.clone())
            .unwrap_or_else(|| panic!("{sam} is not in recorded.ldif"))
    }

    /// A cloud user in the mirror and in the run's work.
    fn sync_user(&mut self, rec: UserRec) {
        self.work.users.insert(rec.user.id.clone());
        self.mirror.users.insert(rec.user.id.clone(), rec);
    }

    fn sync_group(&mut self, rec: GroupRec) {
        self.work.groups.insert(rec.id.clone());
        self.mirror.groups.insert(rec.id.clone(), rec);
    }

    /// alice as the agent manages her: known by objectGUID, before and after the fold.
    fn managed_alice(&mut self) -> UserRec {
        let mut alice = user("u-alice", "alice", "Alice", "Archer");
        alice.user.email = Some("alice@example.com".into());
        alice.guid = Some(self.guid("alice"));
        self.before.users.insert("u-alice".into(), alice.clone());
        alice
    }

    fn managed_engineering(&mut self) -> GroupRec {
        let mut eng = group("g-eng", "Engineering");
        eng.guid = Some(self.guid("Engineering"));
        self.before.groups.insert("g-eng".into(), eng.clone());
        eng
    }

    fn password(&mut self, id: &str, pw: &str) {
        self.work.passwords.insert(id.into(), Some("sealed".into()));
        self.passwords.insert(id.into(), Ok(Secret::new(pw)));
    }

    /// The plan; `Err` when the threshold held disconnections back (`plan_held` shows them).
    fn plan(&self) -> (Lookup, Result<Plan, OverThreshold>) {
        let (lookup, p) = self.plan_held();
        match &p.blocked {
            Some(t) => (lookup, Err(t.clone())),
            None => (lookup, Ok(p)),
        }
    }

    /// Tier 0 as `Tier0::compute` would have it: `privileged` through nesting, and what the
    /// entries themselves say.
    fn tier0(&self) -> Tier0 {
        Tier0::of(self.privileged.iter().map(|g| {
            (
                g.clone(),
                "it is a member of IT-Admins (it is a member of Domain Admins (Domain Admins is a privileged group))".to_string(),
            )
        }))
    }

    /// AD as the run reads it: a group that only membership changes named comes without its
    /// members, and gets those of the named members whose memberOf holds it (memberOf derived
    /// from the groups' member lists, which the tests change).
    fn as_read(&self, lookup: &Lookup) -> Vec<Obj> {
        let with_member_of: Vec<Obj> = self
            .ad
            .iter()
            .map(|o| Obj {
                member_of: self
                    .ad
                    .iter()
                    .filter(|g| g.members.iter().any(|(m, _)| *m == o.guid))
                    .map(|g| (g.guid.clone(), g.dn.clone()))
                    .collect(),
                ..o.clone()
            })
            .collect();
        let mut ad = self.ad.clone();
        let members: Vec<&Obj> = with_member_of.iter().collect();
        let unanswered = named_members_of(&mut ad, lookup, &members);
        assert!(unanswered.is_empty(), "{unanswered:?}");
        ad
    }

    fn plan_held(&self) -> (Lookup, Plan) {
        let lookup = Lookup::new(&self.mirror, &self.work, &self.policy, &self.scope);
        let found = Found::new(self.as_read(&lookup));
        let sync = self.ad.iter().find(|o| o.sam == "Cloud Groups");
        let tier0 = self.tier0();
        let p = plan(&Input {
            scope: &self.scope,
            mirror: &self.mirror,
            before: &self.before,
            work: &self.work,
            lookup: &lookup,
            found: &found,
            sync_group: sync.filter(|_| self.sync_group_in_ad),
            passwords: &self.passwords,
            policy: &self.policy,
            tier0: &tier0,
            allow_deletions: self.allow,
            spent: self.spent,
            approved: &self.approved,
            consented: &self.consented,
        });
        (lookup, p)
    }
}

/// The plan as lines: every operation (`Kind DN`) in the order it runs, then every outcome
/// decided without running anything (`user:ID skipped: message`), sorted.
fn lines(p: &Plan) -> Vec<String> {
    let mut out: Vec<String> = p
        .users
        .iter()
        .chain(&p.groups)
        .chain(&p.removals)
        .flat_map(|j| &j.ops)
        .map(|op| format!("{:?} {}", op.kind, op.dn))
        .collect();
    let mut outcomes: Vec<String> = p
        .outcomes
        .iter()
        .map(|(k, o)| {
            let key = match k {
                ObjKey::User(id) => format!("user:{id}"),
                ObjKey::Group(id) => format!("group:{id}"),
                ObjKey::Password(id) => format!("password:{id}"),
            };
            match o {
                Outcome::Done => format!("{key} done"),
                Outcome::Adopted(dn) => format!("{key} adopted {dn}"),
                Outcome::Skipped(m) => format!("{key} skipped: {m}"),
                Outcome::Failed(m) => format!("{key} failed: {m}"),
            }
        })
        .collect();
    outcomes.sort();
    out.extend(outcomes);
    out
}

/// Each expected line must be a line of the plan, or the start of one (messages are long);
/// and the plan has exactly as many lines as expected.
fn check(name: &str, p: &Plan, expected: &[&str]) {
    let got = lines(p);
    let ok = got.len() == expected.len() && got.iter().zip(expected).all(|(g, e)| g.starts_with(e));
    assert!(
        ok,
        "case `{name}`:\nexpected\n  {}\ngot\n  {}",
        expected.join("\n  "),
        got.join("\n  ")
    );
}

fn attr<'a>(op: &'a Op, name: &str) -> Option<&'a HashSet<Vec<u8>>> {
    match &op.change {
        Change::Add(attrs) => attrs.iter().find(|(a, _)| a == name).map(|(_, v)| v),
        _ => None,
    }
}

const ALICE: &str = "CN=alice,OU=Staff,DC=example,DC=com";
const ENG: &str = "CN=Engineering,OU=Staff,DC=example,DC=com";

#[test]
fn the_recorded_objects_are_read_as_the_agent_reads_them() {
    let w = World::new();
    let by = |sam: &str| {
        w.ad.iter()
            .find(|o| o.sam == sam)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(by("alice").marker_id(), Some("u-alice"));
    assert_eq!(by("alice").dn, ALICE);
    assert_eq!(by("alice").member_of.len(), 1);
    assert!(by("Engineering").is_group);
    assert_eq!(by("Engineering").members.len(), 2);
    assert!(by("bob").protected.is_none());
    // The protection rules, each from what the DC recorded.
    let protected = |sam: &str| by(sam).protected.unwrap_or_default();
    assert!(
        protected("svc-protected").contains("adminCount=1"),
        "{}",
        protected("svc-protected")
    );
    assert!(protected("Administrator").contains("adminCount=1"));
    assert!(protected("krbtgt").contains("adminCount=1"));
    assert!(protected("Domain Admins").contains("adminCount=1"));
    assert!(protected("svc-admin").contains("adminCount=1"));
    assert!(by("svc-sync").protected.is_none());
    assert!(by("svc-locked").lockout_time > 0);
}

#[test]
fn users_under_each_policy_and_safety_rule() {
    type Setup = fn(&mut World);
    let cases: &[(&str, Setup, &[&str])] = &[
        (
            "a new cloud user with a password is created enabled",
            |w| {
                w.sync_user(user("u-dave", "dave", "Dave", "Dunn"));
                w.password("u-dave", "Pa55-word!");
            },
            &["CreateUser CN=dave,OU=Staff,DC=example,DC=com"],
        ),
        (
            "a new cloud user without a password is created disabled",
            |w| w.sync_user(user("u-dave", "dave", "Dave", "Dunn")),
            &["CreateUser CN=dave,OU=Staff,DC=example,DC=com"],
        ),
        (
            "a name with a comma is escaped in the new DN",
            |w| w.sync_user(user("u-x", "Smith, J", "J", "Smith")),
            &["CreateUser CN=Smith\\, J,OU=Staff,DC=example,DC=com"],
        ),
        (
            "an existing unmanaged account of the same name is not taken over",
            |w| w.sync_user(user("u-bob", "bob", "Bob", "Baker")),
            &[
                "password:u-bob skipped: the account is not synced (collision)",
                "user:u-bob failed: bob collides with the existing AD account CN=bob,OU=Staff,DC=example,DC=com: it is not managed by ad-sync, and taking over existing accounts is off",
            ],
        ),
        (
            "an account managed for another cloud user is not taken over",
            |w| w.sync_user(user("u-other", "alice", "Alice", "Other")),
            &[
                "password:u-other skipped",
                "user:u-other failed: alice collides with the existing AD account CN=alice,OU=Staff,DC=example,DC=com: it is managed for another cloud object (u-alice)",
            ],
        ),
        (
            "a managed account that matches needs nothing, and stays disabled without a password",
            |w| {
                let alice = w.managed_alice();
                w.sync_user(alice);
            },
            &[],
        ),
        (
            "found by its marker when the mirror has no objectGUID: adopted, nothing else",
            |w| {
                let mut alice = w.managed_alice();
                alice.guid = None;
                w.sync_user(alice);
            },
            &[],
        ),
        (
            "a managed account whose password is known is enabled",
            |w| {
                let mut alice = w.managed_alice();
                alice.password_set = true;
                w.sync_user(alice);
            },
            &["Enable CN=alice,OU=Staff,DC=example,DC=com"],
        ),
        (
            "a new password is set, then the account enabled",
            |w| {
                let alice = w.managed_alice();
                w.sync_user(alice);
                w.password("u-alice", "Pa55-word!");
            },
            &["SetPassword CN=alice", "Enable CN=alice"],
        ),
        (
            "a suspended user that is enabled in AD is disabled",
            |w| {
                let mut alice = w.managed_alice();
                alice.user.suspended = true;
                w.sync_user(alice);
                w.obj("alice").uac = 512;
            },
            &["Disable CN=alice"],
        ),
        (
            "a renamed cloud user: the CN, then the names",
            |w| {
                let mut alice = w.managed_alice();
                alice.user.username = "alice.archer".into();
                w.sync_user(alice);
            },
            &[
                "Rename CN=alice,OU=Staff",
                "UpdateAttributes CN=alice.archer,OU=Staff",
            ],
        ),
        (
            "a changed surname is one attribute update",
            |w| {
                let mut alice = w.managed_alice();
                alice.user.surname = "Abbott".into();
                w.sync_user(alice);
            },
            &["UpdateAttributes CN=alice"],
        ),
        (
            "an account moved out of the Root User container is not touched",
            |w| {
                let mut carol = user("u-carol", "carol", "Carol", "Cole");
                carol.guid = Some(w.guid("carol"));
                w.sync_user(carol);
            },
            &[
                "password:u-carol skipped: the account is not synced",
                "user:u-carol skipped: carol was moved out of the Root User container (OU=Staff,DC=example,DC=com) to CN=carol,OU=Undelegated,DC=example,DC=com",
            ],
        ),
        (
            "an adminCount=1 account is never changed, even when it carries the marker",
            |w| {
                w.scope.root = dn(USERS);
                w.obj("svc-protected").marker = Some(marker("u-p"));
                w.sync_user(user("u-p", "svc-protected", "P", "Q"));
                w.password("u-p", "Pa55-word!");
            },
            &[
                "password:u-p failed: password for svc-protected not set: svc-protected (CN=svc-protected,CN=Users,DC=example,DC=com) is not changed: it is protected",
                "user:u-p failed: svc-protected (CN=svc-protected,CN=Users,DC=example,DC=com) is not changed: it is protected (adminCount=1",
            ],
        ),
        (
            "a built-in critical account is never changed",
            |w| {
                w.scope.root = dn(USERS);
                w.obj("Administrator").marker = Some(marker("u-adm"));
                w.sync_user(user("u-adm", "Administrator", "A", "B"));
            },
            &[
                "password:u-adm skipped",
                "user:u-adm failed: Administrator (CN=Administrator,CN=Users,DC=example,DC=com) is not changed: it is protected",
            ],
        ),
        (
            "a member of Domain Admins is never changed",
            |w| {
                w.scope.root = dn(USERS);
                w.obj("svc-admin").marker = Some(marker("u-sa"));
                w.obj("svc-admin").protected = None;
                let rec = ad::object(&ldap3::SearchEntry {
                    dn: "CN=x,CN=Users,DC=example,DC=com".into(),
                    attrs: HashMap::from([(
                        "memberOf".to_string(),
                        vec![format!(
                            "<GUID=41375269becc144893d6b29c1fc5f563>;<SID=0105000000000005150000005bb1c142bb7661e15769f02100020000>;CN=Domain Admins,{USERS}"
                        )],
                    )]),
                    bin_attrs: HashMap::new(),
                });
                // Without adminCount (SDProp has not run yet), membership alone protects it.
                w.obj("svc-admin").protected = rec.protected;
                w.sync_user(user("u-sa", "svc-admin", "S", "A"));
            },
            &[
                "password:u-sa skipped",
                "user:u-sa failed: svc-admin (CN=svc-admin,CN=Users,DC=example,DC=com) is not changed: it is a member of the privileged group CN=Domain Admins",
            ],
        ),
        (
            "a managed account nested two levels into Domain Admins after it was synced: no password, no enable",
            |w| {
                let alice = w.managed_alice();
                w.sync_user(alice);
                w.password("u-alice", "Pa55-word!");
                let g = w.guid("alice");
                w.privileged.insert(g);
            },
            &[
                "password:u-alice failed: password for alice not set: alice (CN=alice,OU=Staff,DC=example,DC=com) is not changed: it is privileged",
                "user:u-alice failed: alice (CN=alice,OU=Staff,DC=example,DC=com) is not changed: it is privileged: it is a member of IT-Admins (it is a member of Domain Admins",
            ],
        ),
        (
            "a locked-out account is unlocked when the cloud says so",
            |w| {
                w.scope.root = dn(USERS);
                w.obj("svc-locked").marker = Some(marker("u-l"));
                let mut rec = user("u-l", "svc-locked", "", "");
                rec.guid = Some(w.guid("svc-locked"));
                w.before.users.insert("u-l".into(), rec.clone());
                w.sync_user(rec);
                w.work.unlock.insert("u-l".into());
            },
            &[
                "UpdateAttributes CN=svc-locked",
                "Unlock CN=svc-locked,CN=Users,DC=example,DC=com",
            ],
        ),
        (
            "a password over a connection without TLS is refused (defence in depth: none is opened); the account is still synced",
            |w| {
                w.scope.encrypted = false;
                w.sync_user(user("u-dave", "dave", "Dave", "Dunn"));
                w.password("u-dave", "Pa55-word!");
            },
            &[
                "CreateUser CN=dave",
                "password:u-dave failed: password for dave refused: the connection to dc1.example.com is not encrypted",
            ],
        ),
        (
            "a password that cannot be opened fails alone",
            |w| {
                let alice = w.managed_alice();
                w.sync_user(alice);
                w.work.passwords.insert("u-alice".into(), None);
                w.passwords
                    .insert("u-alice".into(), Err("sealed for other agents".into()));
            },
            &["password:u-alice failed: password for alice: sealed for other agents"],
        ),
    ];
    for (name, setup, expected) in cases {
        let mut w = World::new();
        setup(&mut w);
        let (_, p) = w.plan();
        let p = p.unwrap_or_else(|t| panic!("case `{name}`: {t:?}"));
        check(name, &p, expected);
    }
}

#[test]
fn new_accounts_carry_the_marker_and_are_enabled_only_with_a_password() {
    for (with_password, suspended, uac) in [
        (true, false, "512"),
        (false, false, "514"),
        (true, true, "514"),
    ] {
        let mut w = World::new();
        let mut dave = user("u-dave", "dave", "Dave", "Dunn");
        dave.user.suspended = suspended;
        w.sync_user(dave);
        if with_password {
            w.password("u-dave", "Pa55-word!");
        }
        let p = w.plan().1.unwrap_or_else(|t| panic!("{t:?}"));
        let op = &p.users[0].ops[0];
        let one = |a: &str| {
            attr(op, a)
                .and_then(|v| v.iter().next())
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(
            one("userAccountControl").as_deref(),
            Some(uac),
            "{with_password} {suspended}"
        );
        assert_eq!(one("adminDescription").as_deref(), Some("ad-sync:u-dave"));
        assert_eq!(
            one("userPrincipalName").as_deref(),
            Some("dave@example.com")
        );
        assert_eq!(attr(op, "unicodePwd").is_some(), with_password);
        assert_eq!(p.users[0].password_key.is_some(), with_password);
        assert_eq!(p.created_users, vec!["u-dave".to_string()]);
        // The password's value never shows in what is logged of an operation.
        assert!(!format!("{op:?} {}", op.what).contains("Pa55"));
    }
}

#[test]
fn adoption_learns_the_object_guid_only_where_it_changed() {
    let mut w = World::new();
    let mut alice = w.managed_alice();
    alice.guid = None;
    w.sync_user(alice);
    let p = w.plan().1.unwrap_or_else(|t| panic!("{t:?}"));
    assert_eq!(
        p.adopted,
        vec![(ObjKey::User("u-alice".into()), w.guid("alice"))]
    );

    let mut w = World::new();
    let alice = w.managed_alice();
    w.sync_user(alice);
    let p = w.plan().1.unwrap_or_else(|t| panic!("{t:?}"));
    assert!(p.adopted.is_empty());
    assert_eq!(
        p.notes,
        vec![format!(
            "{ALICE} stays disabled until its password is set in the cloud"
        )]
    );
}

#[test]
fn groups_under_each_rule() {
    type Setup = fn(&mut World);
    let cases: &[(&str, Setup, &[&str])] = &[
        (
            "a new group is created in the sync group's container (nested later, with the others)",
            |w| w.sync_group(group("g-ops", "Operations")),
            &["CreateGroup CN=Operations,OU=Staff,DC=example,DC=com"],
        ),
        (
            "a managed group already nested needs nothing",
            |w| {
                let eng = w.managed_engineering();
                w.sync_group(eng);
            },
            &[],
        ),
        (
            "a managed group that left the sync group is nested again",
            |w| {
                let eng = w.managed_engineering();
                w.sync_group(eng);
                w.obj("Engineering").member_of.clear();
            },
            &["NestInSyncGroup CN=Cloud Groups,OU=Staff,DC=example,DC=com"],
        ),
        (
            "a renamed group: the CN and the sAMAccountName",
            |w| {
                let mut eng = w.managed_engineering();
                eng.name = "R&D".into();
                w.sync_group(eng);
            },
            &[
                "Rename CN=Engineering,OU=Staff",
                "UpdateAttributes CN=R&D,OU=Staff",
            ],
        ),
        (
            "an unmanaged group of the same name is not taken over",
            |w| w.sync_group(group("g-ml", "Mailing List")),
            &[
                "group:g-ml failed: group Mailing List collides with the existing AD object CN=Mailing List,OU=Staff,DC=example,DC=com",
            ],
        ),
        (
            "a protected group is never changed",
            |w| {
                w.scope.sync_group = Some(dn(&format!("CN=Cloud Groups,{USERS}")));
                w.obj("Domain Admins").marker = Some(marker("g-da"));
                w.sync_group(group("g-da", "Domain Admins"));
            },
            &[
                "group:g-da failed: group Domain Admins (CN=Domain Admins,CN=Users,DC=example,DC=com) is not changed: it is protected",
            ],
        ),
        (
            "a group moved out of the sync group's and the Root User container is not touched",
            |w| {
                let eng = w.managed_engineering();
                w.sync_group(eng);
                w.scope.sync_group = Some(dn(&format!("CN=Cloud Groups,{USERS}")));
                w.scope.root = dn(USERS);
            },
            &[
                "group:g-eng skipped: group Engineering was moved to CN=Engineering,OU=Staff,DC=example,DC=com, out of the sync group's container and the Root User container",
            ],
        ),
        (
            "a sync group nested in a privileged group is never written: new groups fail",
            |w| {
                w.obj("Cloud Groups").protected = Some(
                    "it is a member of the privileged group CN=Domain Admins,CN=Users,DC=example,DC=com (through CN=IT,OU=Staff,DC=example,DC=com)".into(),
                );
                w.sync_group(group("g-ops", "Operations"));
            },
            &[
                "group:g-ops failed: the sync group CN=Cloud Groups,OU=Staff,DC=example,DC=com is never written: it is a member of the privileged group CN=Domain Admins",
            ],
        ),
        (
            "a protected sync group: a managed group that left it is not nested again",
            |w| {
                let eng = w.managed_engineering();
                w.sync_group(eng);
                w.obj("Engineering").member_of.clear();
                w.obj("Cloud Groups").protected = Some("it is protected (adminCount=1)".into());
            },
            &[
                "group:g-eng failed: the sync group CN=Cloud Groups,OU=Staff,DC=example,DC=com is never written: it is protected (adminCount=1)",
            ],
        ),
        (
            "no sync group configured: groups are not synced",
            |w| {
                w.scope.sync_group = None;
                w.sync_group(group("g-ops", "Operations"));
            },
            &["group:g-ops skipped: no sync group is configured"],
        ),
        (
            "the sync group is gone from AD: groups fail with what to do",
            |w| {
                w.sync_group_in_ad = false;
                w.sync_group(group("g-ops", "Operations"));
            },
            &[
                "group:g-ops failed: the sync group CN=Cloud Groups,OU=Staff,DC=example,DC=com does not exist in AD; create it or re-run ad-sync-setup",
            ],
        ),
    ];
    for (name, setup, expected) in cases {
        let mut w = World::new();
        setup(&mut w);
        let (_, p) = w.plan();
        let p = p.unwrap_or_else(|t| panic!("case `{name}`: {t:?}"));
        check(name, &p, expected);
    }
}

#[test]
fn disconnections_under_each_policy() {
    type Setup = fn(&mut World);
    let remove_alice: Setup = |w| {
        let alice = w.managed_alice();
        let eng = w.managed_engineering();
        w.mirror.groups.insert("g-eng".into(), eng);
        w.work.removed_users.push(alice);
    };
    let cases: &[(&str, UserDisconnection, GroupDisconnection, Setup, &[&str])] = &[
        (
            "user disconnection remove: out of managed groups, then deleted",
            UserDisconnection::Remove,
            GroupDisconnection::Remove,
            remove_alice,
            &[
                "RemoveMembership CN=Engineering,OU=Staff",
                "DeleteUser CN=alice,OU=Staff",
            ],
        ),
        (
            "user disconnection disable: out of managed groups, disabled and released",
            UserDisconnection::Disable,
            GroupDisconnection::Remove,
            remove_alice,
            &["RemoveMembership CN=Engineering", "Release CN=alice"],
        ),
        (
            "user disconnection retain, membership disconnection retain: only released",
            UserDisconnection::Retain,
            GroupDisconnection::Retain,
            remove_alice,
            &["Release CN=alice"],
        ),
        (
            "a disconnected user outside the Root User container is left as it is",
            UserDisconnection::Remove,
            GroupDisconnection::Remove,
            |w| {
                let mut carol = user("u-carol", "carol", "Carol", "Cole");
                carol.guid = Some(w.guid("carol"));
                w.before.users.insert("u-carol".into(), carol.clone());
                w.work.removed_users.push(carol);
            },
            &[
                "user:u-carol skipped: CN=carol,OU=Undelegated,DC=example,DC=com is outside the Root User container or protected",
            ],
        ),
        (
            "a disconnected user already gone from AD needs nothing",
            UserDisconnection::Remove,
            GroupDisconnection::Remove,
            |w| {
                let mut gone = user("u-gone", "gone", "G", "One");
                gone.guid = Some(vec![7; 16]);
                w.work.removed_users.push(gone);
            },
            &[],
        ),
    ];
    for (name, users, members, setup, expected) in cases {
        let mut w = World::new();
        w.policy.user_disconnection_action = *users;
        w.policy.membership_disconnection_action = *members;
        w.allow = Some(10);
        setup(&mut w);
        let p = w
            .plan()
            .1
            .unwrap_or_else(|t| panic!("case `{name}`: {t:?}"));
        check(name, &p, expected);
    }

    for (action, expected, deletions) in [
        (GroupDisconnection::Remove, "DeleteGroup CN=Engineering", 1),
        (GroupDisconnection::Retain, "Release CN=Engineering", 0),
    ] {
        let mut w = World::new();
        w.policy.group_disconnection_action = action;
        w.allow = Some(10);
        let eng = w.managed_engineering();
        w.work.removed_groups.push(eng);
        let p = w.plan().1.unwrap_or_else(|t| panic!("{t:?}"));
        check(expected, &p, &[expected]);
        assert_eq!(p.deletions, deletions);
    }
}

#[test]
fn the_deletion_budget() {
    // (managed before, disconnections this run, spent in the window, threshold, percent,
    // --allow-deletions, allowed?)
    type Case = (usize, usize, usize, u32, u32, Option<usize>, bool);
    let cases: &[Case] = &[
        (100, 10, 0, 500, 10, None, true),
        (100, 11, 0, 500, 10, None, false),
        // 10 % of 5 is rounded up to 1.
        (5, 1, 0, 500, 10, None, true),
        (5, 2, 0, 500, 10, None, false),
        // The absolute threshold wins when it is smaller.
        (10_000, 4, 0, 3, 10, None, false),
        (10_000, 3, 0, 3, 10, None, true),
        // Nothing managed yet: nothing may be disconnected.
        (0, 1, 0, 500, 10, None, false),
        (0, 0, 0, 500, 10, None, true),
        // The window counts what was spent: slices of 10 % run after run are held once the
        // day's 10 % is used up.
        (100, 1, 10, 500, 10, None, false),
        (100, 5, 5, 500, 10, None, true),
        (100, 6, 5, 500, 10, None, false),
        // Nothing planned is never over, whatever was spent.
        (100, 0, 50, 500, 10, None, true),
        // --allow-deletions N replaces the budget for one run, both ways, spent or not.
        (5, 40, 3, 500, 10, Some(40), true),
        (100, 5, 0, 500, 10, Some(4), false),
    ];
    for &(managed, planned, spent, limit, percent, allow, ok) in cases {
        let mut before = Mirror::default();
        for i in 0..managed {
            let mut u = user(&format!("u{i}"), &format!("n{i}"), "", "");
            u.guid = Some(vec![1]);
            before.users.insert(format!("u{i}"), u);
        }
        // Users the mirror knows but that were never in AD do not count as managed.
        before
            .users
            .insert("never".into(), user("never", "never", "", ""));
        let mut policy = World::new().policy;
        policy.deletion_threshold = limit;
        policy.deletion_threshold_percent = percent;
        let r = threshold(&before, planned, spent, &policy, allow);
        assert_eq!(
            r.is_ok(),
            ok,
            "managed {managed}, planned {planned}, spent {spent}, threshold {limit}/{percent}%, allow {allow:?}: {r:?}"
        );
        if let Err(t) = r {
            assert_eq!((t.planned, t.managed), (planned, managed));
        }
    }

    // Through the planner: over the budget, every disconnection not approved is held
    // (nothing planned for its object, its changes answered as skipped with how to approve);
    // an approved one runs and is not counted.
    let mut w = two_removed(UserDisconnection::Remove);
    let p = w.plan_held().1;
    // Two managed, 10 % of two rounds up to one: two disconnections are over it.
    assert_eq!(
        p.blocked,
        Some(OverThreshold {
            planned: 2,
            spent: 0,
            limit: 1,
            managed: 2,
            window_hours: 24,
        })
    );
    assert!(p.removals.is_empty(), "{:?}", p.removals);
    assert_eq!(p.deletions, 0);
    let held: Vec<(&ObjKey, Action, &str)> = p
        .held
        .iter()
        .map(|h| (&h.key, h.action, h.name.as_str()))
        .collect();
    assert_eq!(
        held,
        vec![
            (&ObjKey::User("u-alice".into()), Action::Delete, "alice"),
            (
                &ObjKey::Group("g-eng".into()),
                Action::Delete,
                "Engineering"
            ),
        ]
    );
    assert!(
        matches!(p.outcomes.get(&ObjKey::User("u-alice".into())), Some(Outcome::Skipped(m)) if m.contains("--approve u-alice")),
        "{:?}",
        p.outcomes
    );
    // alice approved: she is deleted; Engineering alone is within the budget (one allowed).
    w.approved.insert(ObjKey::User("u-alice".into()));
    let p = w.plan_held().1;
    assert_eq!(p.blocked, None);
    assert!(p.held.is_empty());
    let deletes = p
        .removals
        .iter()
        .flat_map(|j| j.ops.iter())
        .filter(|o| matches!(o.kind, OpKind::DeleteUser | OpKind::DeleteGroup))
        .count();
    assert_eq!(deletes, 2);
    // Disabling counts as much as deleting: the default policy is held too.
    let p = two_removed(UserDisconnection::Disable).plan_held().1;
    let actions: Vec<Action> = p.held.iter().map(|h| h.action).collect();
    assert_eq!(
        actions,
        vec![Action::Disable, Action::Delete],
        "{:?}",
        p.held
    );
    // ... and what the window spent already counts: one more is over it.
    let mut w = World::new();
    let eng = w.managed_engineering();
    w.managed_alice();
    w.work.removed_groups.push(eng);
    w.spent = 1;
    assert!(w.plan_held().1.blocked.is_some());
    w.spent = 0;
    assert!(w.plan_held().1.blocked.is_none());
}

#[test]
fn mass_suspensions_are_held_by_the_budget_and_the_rest_of_the_job_runs() {
    let mut w = World::new();
    // Two managed accounts, enabled in AD; the cloud suspends both and renames alice.
    let mut alice = w.managed_alice();
    alice.user.suspended = true;
    alice.user.surname = "Renamed".into();
    w.sync_user(alice);
    let mut bob = user("u-bob", "bob", "Bob", "Baker");
    bob.guid = Some(w.guid("bob"));
    w.obj("bob").marker = Some(marker("u-bob"));
    w.obj("bob").uac = 512;
    w.before.users.insert("u-bob".into(), bob.clone());
    bob.user.suspended = true;
    w.sync_user(bob);
    w.obj("alice").uac = 512;
    let p = w.plan_held().1;
    assert!(p.blocked.is_some(), "two suspensions of two managed");
    let held: Vec<(&ObjKey, Action)> = p.held.iter().map(|h| (&h.key, h.action)).collect();
    assert_eq!(
        held,
        vec![
            (&ObjKey::User("u-alice".into()), Action::Suspend),
            (&ObjKey::User("u-bob".into()), Action::Suspend),
        ]
    );
    let ops: Vec<OpKind> = p
        .users
        .iter()
        .flat_map(|j| j.ops.iter().map(|o| o.kind))
        .collect();
    assert!(!ops.contains(&OpKind::Disable), "{ops:?}");
    assert!(
        ops.contains(&OpKind::UpdateAttributes),
        "alice's rename still runs: {ops:?}"
    );
    // Approved, bob's suspension runs (and alice's alone is within the budget).
    w.approved.insert(ObjKey::User("u-bob".into()));
    let p = w.plan_held().1;
    assert!(p.held.is_empty(), "{:?}", p.held);
    let disables = p
        .users
        .iter()
        .flat_map(|j| j.ops.iter())
        .filter(|o| o.kind == OpKind::Disable)
        .count();
    assert_eq!(disables, 2);
}

/// alice and Engineering, both managed, removed in the cloud; groups are removed, users get
/// `users`.
fn two_removed(users: UserDisconnection) -> World {
    let mut w = World::new();
    w.policy.user_disconnection_action = users;
    w.policy.group_disconnection_action = GroupDisconnection::Remove;
    let alice = w.managed_alice();
    let eng = w.managed_engineering();
    w.work.removed_users.push(alice);
    w.work.removed_groups.push(eng);
    w
}

#[test]
fn memberships_change_only_what_the_agent_manages() {
    let mut w = World::new();
    let mut alice = w.managed_alice();
    alice.password_set = true;
    let eng = w.managed_engineering();
    let mut dave = user("u-dave", "dave", "Dave", "Dunn");
    dave.guid = Some(vec![0xd; 16]);
    w.mirror.users.insert("u-alice".into(), alice);
    w.mirror.users.insert("u-dave".into(), dave);
    w.sync_group(eng);
    // The cloud: Engineering holds dave only. AD: alice (managed) and bob (not managed).
    w.mirror
        .edges
        .insert(("g-eng".into(), MemberType::User, "u-dave".into()));
    let (lookup, p) = w.plan();
    let p = p.unwrap_or_else(|t| panic!("{t:?}"));
    let jobs = memberships(
        &w.mirror,
        &w.work,
        &p,
        &lookup.groups,
        &mut p.outcomes.clone(),
        &w.policy,
        &w.tier0(),
    );
    assert_eq!(jobs.len(), 1);
    let op = &jobs[0].ops[0];
    assert_eq!((op.kind, op.dn.as_str()), (OpKind::Members, ENG));
    let Change::Modify(mods) = &op.change else {
        panic!("{op:?}")
    };
    let guid_of = |g: &[u8]| String::from_utf8_lossy(&guid_ref(g)).into_owned();
    let mut seen = Vec::new();
    for m in mods {
        match m {
            Mod::Add(a, v) if a == b"member" => {
                seen.extend(v.iter().map(|v| format!("+{}", String::from_utf8_lossy(v))))
            }
            Mod::Delete(a, v) if a == b"member" => {
                seen.extend(v.iter().map(|v| format!("-{}", String::from_utf8_lossy(v))))
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        seen,
        vec![
            format!("+{}", guid_of(&[0xd; 16])),
            format!("-{}", guid_of(&w.guid("alice")))
        ],
        "bob, whom an administrator put there, stays"
    );
    assert!(op.already_so(20) && op.already_so(16) && !op.already_so(50));

    // A group that failed is left alone; one already right needs nothing.
    let mut failed = p.outcomes.clone();
    failed.insert(ObjKey::Group("g-eng".into()), Outcome::Failed("x".into()));
    assert!(
        memberships(
            &w.mirror,
            &w.work,
            &p,
            &lookup.groups,
            &mut failed.clone(),
            &w.policy,
            &w.tier0()
        )
        .is_empty()
    );
    w.mirror
        .edges
        .insert(("g-eng".into(), MemberType::User, "u-alice".into()));
    w.mirror
        .edges
        .remove(&("g-eng".into(), MemberType::User, "u-dave".into()));
    assert!(
        memberships(
            &w.mirror,
            &w.work,
            &p,
            &lookup.groups,
            &mut p.outcomes.clone(),
            &w.policy,
            &w.tier0()
        )
        .is_empty()
    );

    // A privileged member is neither added nor removed; the group's change fails saying so.
    w.mirror
        .edges
        .insert(("g-eng".into(), MemberType::User, "u-dave".into()));
    w.mirror
        .edges
        .remove(&("g-eng".into(), MemberType::User, "u-alice".into()));
    w.privileged.insert(vec![0xd; 16]);
    w.privileged.insert(w.guid("alice"));
    let mut outcomes = p.outcomes.clone();
    let jobs = memberships(
        &w.mirror,
        &w.work,
        &p,
        &lookup.groups,
        &mut outcomes,
        &w.policy,
        &w.tier0(),
    );
    assert!(jobs.is_empty(), "{jobs:?}");
    match outcomes.get(&ObjKey::Group("g-eng".into())) {
        Some(Outcome::Failed(why)) => assert!(
            why.contains("dave (it is privileged") && why.contains("alice (it is privileged"),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn match_mode_brings_the_groups_that_contain_a_changed_group() {
    let mut w = World::new();
    w.policy.group_membership_sync_type = MembershipSyncType::Match;
    w.mirror
        .groups
        .insert("g-all".into(), group("g-all", "Everyone"));
    w.sync_group(group("g-eng", "Engineering"));
    w.mirror
        .edges
        .insert(("g-all".into(), MemberType::Group, "g-eng".into()));
    let lookup = Lookup::new(&w.mirror, &w.work, &w.policy, &w.scope);
    assert_eq!(
        lookup.groups.iter().map(String::as_str).collect::<Vec<_>>(),
        vec!["g-all", "g-eng"]
    );
    w.policy.group_membership_sync_type = MembershipSyncType::Minimal;
    let lookup = Lookup::new(&w.mirror, &w.work, &w.policy, &w.scope);
    assert_eq!(lookup.groups.len(), 1);
}

#[test]
fn lookups_search_by_object_guid_then_by_name_for_what_ad_no_longer_has() {
    let mut w = World::new();
    let alice = w.managed_alice();
    w.sync_user(alice);
    let mut gone = user("u-gone", "gone", "G", "One");
    gone.guid = Some(vec![7; 16]);
    w.sync_user(gone);
    w.sync_user(user("u-new", "new", "N", "Ew"));
    let lookup = Lookup::new(&w.mirror, &w.work, &w.policy, &w.scope);
    assert_eq!(lookup.terms.len(), 3);
    assert!(lookup.terms.contains(&"(sAMAccountName=new)".to_string()));
    assert!(
        lookup
            .terms
            .iter()
            .filter(|t| t.starts_with("(objectGUID="))
            .count()
            == 2
    );
    // AD answered with alice only: `gone` is looked for again by name.
    let alice_obj: Vec<Obj> = w.ad.iter().filter(|o| o.sam == "alice").cloned().collect();
    assert_eq!(
        lookup.again(&alice_obj, &[]),
        vec!["(sAMAccountName=gone)".to_string()]
    );
}

#[test]
fn new_groups_are_nested_together_once_created() {
    let mut w = World::new();
    for i in 0..3 {
        w.sync_group(group(&format!("g{i}"), &format!("G{i}")));
    }
    let p = w.plan().1.unwrap_or_else(|t| panic!("{t:?}"));
    let sync =
        w.ad.iter()
            .find(|o| o.sam == "Cloud Groups")
            .cloned()
            .unwrap_or_default();
    let mut outcomes = Outcomes::new();
    outcomes.insert(ObjKey::Group("g0".into()), Outcome::Done);
    outcomes.insert(
        ObjKey::Group("g1".into()),
        Outcome::Failed("refused".into()),
    );
    outcomes.insert(ObjKey::Group("g2".into()), Outcome::Done);
    let jobs = nest_new_groups(&p, &sync, &outcomes, false);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].keys.len(), 2, "the failed one is not nested");
    assert_eq!(jobs[0].ops[0].kind, OpKind::NestInSyncGroup);
    // A dry run nests all it would have created.
    assert_eq!(
        nest_new_groups(&p, &sync, &Outcomes::new(), true)[0]
            .keys
            .len(),
        3
    ); // A protected sync group gets nothing, whatever the outcomes say.
    let mut protected = sync.clone();
    protected.protected = Some("it is protected (adminCount=1)".into());
    assert!(nest_new_groups(&p, &protected, &outcomes, false).is_empty());
}

#[test]
fn results_roll_each_change_up_from_its_objects() {
    let mut work = Work {
        all_seqs: vec![1, 2, 3, 4, 5],
        ..Work::default()
    };
    work.seqs.insert(ObjKey::User("a".into()), vec![1, 2]);
    work.seqs.insert(ObjKey::Password("a".into()), vec![2]);
    work.seqs.insert(ObjKey::Group("g".into()), vec![3]);
    work.seqs.insert(ObjKey::User("b".into()), vec![4]);
    work.skipped.push((5, "nothing to do in AD".into()));
    let mut outcomes = Outcomes::new();
    outcomes.insert(ObjKey::User("a".into()), Outcome::Skipped("moved".into()));
    outcomes.insert(
        ObjKey::Password("a".into()),
        Outcome::Failed("too short".into()),
    );
    outcomes.insert(ObjKey::Group("g".into()), Outcome::Done);
    let (results, failed, skipped) = results(&work, &outcomes);
    let got: Vec<(i64, ApplyStatus, &str)> = results
        .iter()
        .map(|r| (r.seq, r.status, r.message.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, ApplyStatus::Skipped, "moved"),
            (2, ApplyStatus::Failed, "too short"),
            (3, ApplyStatus::Applied, ""),
            // No outcome at all (nothing to do): applied.
            (4, ApplyStatus::Applied, ""),
            (5, ApplyStatus::Skipped, "nothing to do in AD"),
        ]
    );
    assert_eq!((failed, skipped), (1, 2));
}

#[test]
fn passwords_count_as_set_when_set_here_or_sealed_for_earlier_agents_only() {
    let mut work = Work::default();
    work.passwords.insert("a".into(), Some("sealed".into()));
    work.passwords.insert("b".into(), Some("sealed".into()));
    work.passwords.insert("c".into(), None);
    let mut outcomes = Outcomes::new();
    outcomes.insert(ObjKey::Password("a".into()), Outcome::Done);
    outcomes.insert(
        ObjKey::Password("b".into()),
        Outcome::Failed("refused".into()),
    );
    let mut set: Vec<&String> = passwords_now_set(&work, &outcomes);
    set.sort();
    assert_eq!(set, vec!["a", "c"]);
}

/// A link the cloud keeps for an imported object: this domain, this objectGUID.
fn link_to(w: &World, sam: &str, domain: &str) -> ad_sync_core::cloud::api::AdLink {
    ad_sync_core::cloud::api::AdLink {
        domain: domain.into(),
        guid: ad::guid_string(&w.guid(sam)),
    }
}

const BOB: &str = "CN=bob,OU=Staff,DC=example,DC=com";

#[test]
fn existing_accounts_are_adopted_only_when_allowed_and_safe() {
    type Setup = fn(&mut World);
    let cases: &[(&str, Setup, &[&str])] = &[
        (
            "adoption on: bob is taken over where he is; his attributes come from the cloud; disabled in AD, he stays disabled (his old password is not the cloud's word)",
            |w| {
                w.policy.adopt_existing_users = true;
                let mut bob = user("u-bob", "bob", "Bob", "Baker");
                bob.user.email = Some("bob@example.com".into());
                w.sync_user(bob);
            },
            &[
                "Adopt CN=bob,OU=Staff",
                "UpdateAttributes CN=bob,OU=Staff",
                "user:u-bob adopted CN=bob,OU=Staff,DC=example,DC=com",
            ],
        ),
        (
            "adoption on: an enabled bob with a password in AD stays enabled, his password kept",
            |w| {
                w.policy.adopt_existing_users = true;
                w.obj("bob").uac = 512;
                w.sync_user(user("u-bob", "bob", "Bob", "Baker"));
            },
            &[
                "Adopt CN=bob,OU=Staff",
                "UpdateAttributes CN=bob,OU=Staff",
                "user:u-bob adopted CN=bob,OU=Staff,DC=example,DC=com",
            ],
        ),
        (
            "adoption on: disabled bob is enabled once the cloud sets his password",
            |w| {
                w.policy.adopt_existing_users = true;
                w.sync_user(user("u-bob", "bob", "Bob", "Baker"));
                w.password("u-bob", "Pa55-word!");
            },
            &[
                "Adopt CN=bob,OU=Staff",
                "UpdateAttributes CN=bob,OU=Staff",
                "SetPassword CN=bob,OU=Staff",
                "Enable CN=bob,OU=Staff",
                "user:u-bob adopted CN=bob,OU=Staff,DC=example,DC=com",
            ],
        ),
        (
            "adoption on, but bob has no password in AD: taken over, and stays disabled until the cloud sets one",
            |w| {
                w.policy.adopt_existing_users = true;
                w.obj("bob").pwd_last_set = 0;
                w.sync_user(user("u-bob", "bob", "Bob", "Baker"));
            },
            &[
                "Adopt CN=bob,OU=Staff",
                "UpdateAttributes CN=bob,OU=Staff",
                "user:u-bob adopted CN=bob",
            ],
        ),
        (
            "adoption on: a protected account (adminCount=1) is never taken over",
            |w| {
                w.policy.adopt_existing_users = true;
                w.scope.root = dn(USERS);
                w.sync_user(user("u-p", "svc-protected", "S", "P"));
            },
            &[
                "password:u-p skipped",
                "user:u-p failed: svc-protected collides with the existing AD account CN=svc-protected,CN=Users,DC=example,DC=com: it is protected (adminCount=1",
            ],
        ),
        (
            "adoption on: a member of a privileged group through nesting is never taken over",
            |w| {
                w.policy.adopt_existing_users = true;
                w.scope.root = dn(USERS);
                let g = w.guid("svc-nested");
                w.privileged.insert(g);
                w.sync_user(user("u-n", "svc-nested", "S", "N"));
            },
            &[
                "password:u-n skipped",
                "user:u-n failed: svc-nested collides with the existing AD account CN=svc-nested,CN=Users,DC=example,DC=com: it is privileged: it is a member of IT-Admins",
            ],
        ),
        (
            "adoption on: a primary-group member of Domain Admins is never taken over",
            |w| {
                w.policy.adopt_existing_users = true;
                w.obj("bob").protected =
                    Some("its primary group is a privileged group (RID 512)".into());
                w.sync_user(user("u-bob", "bob", "Bob", "Baker"));
            },
            &[
                "password:u-bob skipped",
                "user:u-bob failed: bob collides with the existing AD account CN=bob,OU=Staff,DC=example,DC=com: its primary group is a privileged group (RID 512); the agent never takes over",
            ],
        ),
        (
            "adoption on: an account outside the Root User container is never taken over",
            |w| {
                w.policy.adopt_existing_users = true;
                w.sync_user(user("u-s", "svc-sync", "S", "S"));
            },
            &[
                "password:u-s skipped",
                "user:u-s failed: svc-sync collides with the existing AD account CN=svc-sync,CN=Users,DC=example,DC=com: it is outside the Root User container",
            ],
        ),
        (
            "adoption on: a group of the user's name is not an account",
            |w| {
                w.policy.adopt_existing_users = true;
                w.sync_user(user("u-m", "Mailing List", "M", "L"));
            },
            &[
                "password:u-m skipped",
                "user:u-m failed: Mailing List collides with the existing AD account CN=Mailing List,OU=Staff,DC=example,DC=com: it is not a user account",
            ],
        ),
        (
            "adoption on: an account managed for another cloud user stays that user's",
            |w| {
                w.policy.adopt_existing_users = true;
                w.sync_user(user("u-other", "alice", "A", "O"));
            },
            &[
                "password:u-other skipped",
                "user:u-other failed: alice collides with the existing AD account CN=alice,OU=Staff,DC=example,DC=com: it is managed for another cloud object (u-alice)",
            ],
        ),
        (
            "adoption off, but imported: the link takes over bob (and renames him to the cloud's name)",
            |w| {
                let mut robert = user("u-robert", "robert", "Bob", "Baker");
                robert.user.links = vec![link_to(w, "bob", "DC=example,DC=com")];
                w.sync_user(robert);
                let g = w.guid("bob");
                w.consented.insert(g);
            },
            &[
                "Adopt CN=bob,OU=Staff",
                "Rename CN=bob,OU=Staff",
                "UpdateAttributes CN=robert,OU=Staff",
                // Disabled in AD: he stays so until the cloud sets a password.
                "user:u-robert adopted CN=bob,OU=Staff,DC=example,DC=com",
            ],
        ),
        (
            "adoption off, and a link this agent's import never made (the cloud's alone): refused",
            |w| {
                let mut robert = user("u-robert", "robert", "Bob", "Baker");
                robert.user.links = vec![link_to(w, "bob", "DC=example,DC=com")];
                w.sync_user(robert);
            },
            &[
                "password:u-robert skipped",
                "user:u-robert failed: robert collides with the existing AD account CN=bob,OU=Staff,DC=example,DC=com: the cloud links it to this AD object, but this agent's import never made that link",
            ],
        ),
        (
            "a link to another domain means nothing here: a new account is created",
            |w| {
                let mut robert = user("u-robert", "robert", "Bob", "Baker");
                robert.user.links = vec![link_to(w, "bob", "DC=other,DC=org")];
                w.sync_user(robert);
            },
            &["CreateUser CN=robert,OU=Staff"],
        ),
        (
            "imported, but protected since: the link does not override the safety rules",
            |w| {
                w.obj("bob").protected = Some(
                    "it is protected (adminCount=1: it is or was in an administrative group)"
                        .into(),
                );
                let mut bob = user("u-bob", "bob", "Bob", "Baker");
                bob.user.links = vec![link_to(w, "bob", "dc=EXAMPLE,dc=com")];
                w.sync_user(bob);
                let g = w.guid("bob");
                w.consented.insert(g);
            },
            &[
                "password:u-bob skipped",
                "user:u-bob failed: bob collides with the existing AD account CN=bob,OU=Staff,DC=example,DC=com: it is protected",
            ],
        ),
    ];
    for (name, setup, expected) in cases {
        let mut w = World::new();
        setup(&mut w);
        let p = w.plan().1.unwrap_or_else(|t| panic!("{name}: {t:?}"));
        check(name, &p, expected);
        // The mirror learns an adopted object's GUID only through `adoptions`, after its job.
        for a in &p.adoptions {
            assert!(!p.adopted.iter().any(|(k, _)| *k == a.key), "{name}");
        }
    }
}

#[test]
fn an_adoption_writes_the_marker_first_and_says_what_will_change() {
    let mut w = World::new();
    w.policy.adopt_existing_users = true;
    w.sync_user(user("u-bob", "bob", "Robert", "Baker"));
    let p = w.plan().1.unwrap_or_else(|t| panic!("{t:?}"));
    let ops = &p.users[0].ops;
    assert_eq!((ops[0].kind, ops[0].dn.as_str()), (OpKind::Adopt, BOB));
    let Change::Modify(mods) = &ops[0].change else {
        panic!("{:?}", ops[0])
    };
    assert!(
        matches!(&mods[0], Mod::Replace(a, v) if a == b"adminDescription" && v.contains(b"ad-sync:u-bob".as_slice()))
    );
    assert!(
        ops[0]
            .what
            .contains("the cloud now sets userPrincipalName, givenName, displayName")
            && ops[0]
                .what
                .contains("its password is kept until the cloud sets one"),
        "{}",
        ops[0].what
    );
    // The marker is not written twice, and no password is set.
    assert!(!ops[1].what.contains("adminDescription"), "{}", ops[1].what);
    assert!(!ops.iter().any(|o| o.kind == OpKind::SetPassword));
    let a = &p.adoptions[0];
    // Disabled in AD: his old password does not count as set.
    assert_eq!((a.dn.as_str(), a.has_password), (BOB, false));
    assert_eq!(a.guid, w.guid("bob"));
}

#[test]
fn existing_groups_are_adopted_only_when_allowed_and_safe() {
    type Setup = fn(&mut World);
    let cases: &[(&str, Setup, &[&str])] = &[
        (
            "adoption on: an unmanaged security group of the name is taken over in place",
            |w| {
                w.policy.adopt_existing_groups = true;
                w.obj("Engineering").marker = None;
                w.sync_group(group("g-new", "Engineering"));
            },
            &[
                "Adopt CN=Engineering,OU=Staff",
                "group:g-new adopted CN=Engineering,OU=Staff,DC=example,DC=com",
            ],
        ),
        (
            "adoption off: the same group is a collision that says how to allow it",
            |w| {
                w.obj("Engineering").marker = None;
                w.sync_group(group("g-new", "Engineering"));
            },
            &[
                "group:g-new failed: group Engineering collides with the existing AD object CN=Engineering,OU=Staff,DC=example,DC=com: it is not managed by ad-sync, and taking over existing groups is off ([sync] adopt_existing_groups)",
            ],
        ),
        (
            "adoption on: a distribution group is never taken over",
            |w| {
                w.policy.adopt_existing_groups = true;
                w.sync_group(group("g-ml", "Mailing List"));
            },
            &[
                "group:g-ml failed: group Mailing List collides with the existing AD object CN=Mailing List,OU=Staff,DC=example,DC=com: it is a distribution group",
            ],
        ),
        (
            "adoption on: a group nested in a privileged group is never taken over",
            |w| {
                w.policy.adopt_existing_groups = true;
                w.obj("Engineering").marker = None;
                let g = w.guid("Engineering");
                w.privileged.insert(g);
                w.sync_group(group("g-new", "Engineering"));
            },
            &[
                "group:g-new failed: group Engineering collides with the existing AD object CN=Engineering,OU=Staff,DC=example,DC=com: it is privileged: it is a member of IT-Admins",
            ],
        ),
        (
            "adoption on: Domain Admins is never taken over",
            |w| {
                w.policy.adopt_existing_groups = true;
                w.scope.root = dn(USERS);
                w.sync_group(group("g-da", "Domain Admins"));
            },
            &[
                "group:g-da failed: group Domain Admins collides with the existing AD object CN=Domain Admins,CN=Users,DC=example,DC=com: it is protected (adminCount=1",
            ],
        ),
        (
            "adoption on: the sync group itself is never taken over",
            |w| {
                w.policy.adopt_existing_groups = true;
                w.sync_group(group("g-cg", "Cloud Groups"));
            },
            &[
                "group:g-cg failed: group Cloud Groups collides with the existing AD object CN=Cloud Groups,OU=Staff,DC=example,DC=com: it is the sync group itself",
            ],
        ),
        (
            "a group outside both containers is never taken over",
            |w| {
                w.policy.adopt_existing_groups = true;
                w.scope.root = dn("OU=Undelegated,DC=example,DC=com");
                w.scope.sync_group = Some(dn("CN=Cloud Groups,OU=Undelegated,DC=example,DC=com"));
                w.obj("Engineering").marker = None;
                w.sync_group(group("g-new", "Engineering"));
            },
            &[
                "group:g-new failed: group Engineering collides with the existing AD object CN=Engineering,OU=Staff,DC=example,DC=com: it is neither in the sync group's container nor inside the Root User container",
            ],
        ),
    ];
    for (name, setup, expected) in cases {
        let mut w = World::new();
        setup(&mut w);
        let p = w.plan().1.unwrap_or_else(|t| panic!("{name}: {t:?}"));
        check(name, &p, expected);
    }
}

#[test]
fn an_adopted_group_keeps_the_members_ad_gave_it_and_gets_the_clouds() {
    let mut w = World::new();
    w.policy.adopt_existing_groups = true;
    w.obj("Engineering").marker = None;
    // carol is managed (by GUID); the cloud puts her in the group. bob (unmanaged) and alice
    // (managed, but not a cloud member) are in it in AD.
    let mut carol = user("u-carol", "carol", "Carol", "C");
    carol.guid = Some(w.guid("carol"));
    w.mirror.users.insert("u-carol".into(), carol);
    w.sync_group(group("g-new", "Engineering"));
    w.mirror
        .edges
        .insert(("g-new".into(), MemberType::User, "u-carol".into()));
    let (lookup, p) = w.plan();
    let mut p = p.unwrap_or_else(|t| panic!("{t:?}"));
    // What the executor does once the group's job succeeded.
    for a in std::mem::take(&mut p.adoptions) {
        w.mirror.set_guid(&a.key, a.guid);
    }
    let jobs = memberships(
        &w.mirror,
        &w.work,
        &p,
        &lookup.groups,
        &mut p.outcomes.clone(),
        &w.policy,
        &w.tier0(),
    );
    assert_eq!(jobs.len(), 1);
    let Change::Modify(mods) = &jobs[0].ops[0].change else {
        panic!()
    };
    let text = |g: &[u8]| String::from_utf8_lossy(&guid_ref(g)).into_owned();
    let adds: Vec<String> = mods
        .iter()
        .filter_map(|m| match m {
            Mod::Add(_, v) => Some(v.iter().map(|v| String::from_utf8_lossy(v).into_owned())),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(adds, vec![text(&w.guid("carol"))]);
    // alice is not managed in this mirror (no GUID here), bob never was: nobody is removed.
    assert!(
        mods.iter().all(|m| matches!(m, Mod::Add(..))),
        "{:?}",
        jobs[0].ops[0]
    );
}

#[test]
fn one_ad_object_is_taken_over_for_one_cloud_object_only() {
    let mut w = World::new();
    w.policy.adopt_existing_users = true;
    // bob by name, robert linked to bob by an import: the first (by id) has him.
    w.sync_user(user("u-bob", "bob", "Bob", "Baker"));
    let mut robert = user("u-robert", "robert", "Bob", "Baker");
    robert.user.links = vec![link_to(&w, "bob", "DC=example,DC=com")];
    w.sync_user(robert);
    let p = w.plan().1.unwrap_or_else(|t| panic!("{t:?}"));
    assert_eq!(p.adoptions.len(), 1);
    let robert = p.outcomes.get(&ObjKey::User("u-robert".into()));
    assert!(
        matches!(robert, Some(Outcome::Failed(m)) if m.contains("another cloud object takes it over")),
        "{robert:?}"
    );
}

/// The plan and the membership jobs that follow it.
fn plan_and_members(w: &World) -> (Plan, Vec<Job>) {
    let (lookup, p) = w.plan_held();
    let mut outcomes = p.outcomes.clone();
    let members = memberships(
        &w.mirror,
        &w.work,
        &p,
        &lookup.groups,
        &mut outcomes,
        &w.policy,
        &w.tier0(),
    );
    (p, members)
}

/// Every op of the plan and of its memberships, as (kind, DN, the attributes it modifies).
fn all_ops(w: &World) -> (Vec<(OpKind, String, Vec<String>)>, Plan) {
    let (p, members) = plan_and_members(w);
    let ops = p
        .users
        .iter()
        .chain(&p.groups)
        .chain(&p.removals)
        .chain(&members)
        .flat_map(|j| &j.ops)
        .map(|op| {
            let attrs = match &op.change {
                Change::Modify(mods) => mods
                    .iter()
                    .map(|m| match m {
                        Mod::Add(a, _) | Mod::Delete(a, _) | Mod::Replace(a, _) => {
                            String::from_utf8_lossy(a).into_owned()
                        }
                        Mod::Increment(a, _) => String::from_utf8_lossy(a).into_owned(),
                    })
                    .collect(),
                _ => Vec::new(),
            };
            (op.kind, op.dn.clone(), attrs)
        })
        .collect();
    (ops, p)
}

/// The member values a membership op of `group` adds (`+`) or deletes (`-`).
fn member_changes(w: &World, group_dn: &str) -> Vec<String> {
    plan_and_members(w)
        .1
        .iter()
        .flat_map(|j| &j.ops)
        .filter(|op| op.dn == group_dn)
        .flat_map(|op| match &op.change {
            Change::Modify(mods) => mods
                .iter()
                .flat_map(|m| match m {
                    Mod::Add(_, v) => v
                        .iter()
                        .map(|v| format!("+{}", String::from_utf8_lossy(v)))
                        .collect::<Vec<_>>(),
                    Mod::Delete(_, v) => v
                        .iter()
                        .map(|v| format!("-{}", String::from_utf8_lossy(v)))
                        .collect(),
                    _ => Vec::new(),
                })
                .collect::<Vec<_>>(),
            _ => Vec::new(),
        })
        .collect()
}

/// Whether the behaviour `claim` promises is what the planner does under `policy`, on the
/// recorded directory.
fn holds(claim: ad_sync_core::policy::Claim, policy: &Sync) -> bool {
    use ad_sync_core::cloud::api::{Change as CloudChange, ChangeBody};
    use ad_sync_core::policy::Claim as C;
    let mut w = World::new();
    w.policy = policy.clone();
    w.allow = Some(10);
    let guid_of = |g: &[u8]| String::from_utf8_lossy(&guid_ref(g)).into_owned();
    match claim {
        C::UserDeleted
        | C::UserDisabledAndReleased
        | C::UserReleased
        | C::LeaverLeavesGroups
        | C::LeaverKeepsGroups => {
            let alice = w.managed_alice();
            let eng = w.managed_engineering();
            w.mirror.groups.insert("g-eng".into(), eng);
            w.work.removed_users.push(alice);
            let (ops, _) = all_ops(&w);
            let on_alice: Vec<_> = ops.iter().filter(|(_, dn, _)| dn == ALICE).collect();
            let deleted = on_alice.iter().any(|(k, _, _)| *k == OpKind::DeleteUser);
            let released = on_alice.iter().any(|(k, _, _)| *k == OpKind::Release);
            let disabled = on_alice
                .iter()
                .any(|(k, _, a)| *k == OpKind::Release && a.contains(&"userAccountControl".into()));
            let left_groups = ops
                .iter()
                .any(|(k, dn, _)| *k == OpKind::RemoveMembership && dn == ENG);
            match claim {
                C::UserDeleted => deleted && !released,
                C::UserDisabledAndReleased => released && disabled && !deleted,
                C::UserReleased => released && !disabled && !deleted,
                C::LeaverLeavesGroups => left_groups,
                _ => !left_groups,
            }
        }
        C::GroupDeleted | C::GroupReleased => {
            let eng = w.managed_engineering();
            w.work.removed_groups.push(eng);
            let (ops, _) = all_ops(&w);
            let deleted = ops
                .iter()
                .any(|(k, dn, _)| *k == OpKind::DeleteGroup && dn == ENG);
            let released = ops.iter().any(|(k, dn, a)| {
                *k == OpKind::Release && dn == ENG && !a.contains(&"member".into())
            });
            let touched_members = ops
                .iter()
                .any(|(_, dn, a)| dn == ENG && a.contains(&"member".into()));
            match claim {
                C::GroupDeleted => deleted,
                _ => released && !deleted && !touched_members,
            }
        }
        C::EndedMembershipRemoved | C::HandAddedMembersStay => {
            // AD: Engineering holds alice (managed) and bob (added by hand); the cloud's
            // Engineering no longer holds alice, who stays a cloud user.
            let mut alice = w.managed_alice();
            alice.password_set = true;
            w.mirror.users.insert("u-alice".into(), alice);
            let eng = w.managed_engineering();
            w.sync_group(eng);
            let changes = member_changes(&w, ENG);
            match claim {
                C::EndedMembershipRemoved => {
                    changes.contains(&format!("-{}", guid_of(&w.guid("alice"))))
                }
                _ => {
                    let bob = guid_of(&w.guid("bob"));
                    !changes.iter().any(|c| c.ends_with(&bob))
                }
            }
        }
        C::DirectMembersOnly | C::NestedUsersFlattened => {
            // The cloud: Engineering holds the group Sub, Sub holds dave; all three managed.
            let eng = w.managed_engineering();
            let mut sub = group("g-sub", "Sub");
            sub.guid = Some(vec![0xe; 16]);
            let mut dave = user("u-dave", "dave", "Dave", "Dunn");
            dave.guid = Some(vec![0xd; 16]);
            w.mirror.users.insert("u-dave".into(), dave);
            w.mirror.groups.insert("g-sub".into(), sub);
            w.sync_group(eng);
            w.mirror
                .edges
                .insert(("g-eng".into(), MemberType::Group, "g-sub".into()));
            w.mirror
                .edges
                .insert(("g-sub".into(), MemberType::User, "u-dave".into()));
            let changes = member_changes(&w, ENG);
            let sub_added = changes.contains(&format!("+{}", guid_of(&[0xe; 16])));
            let dave_added = changes.contains(&format!("+{}", guid_of(&[0xd; 16])));
            match claim {
                C::DirectMembersOnly => sub_added && !dave_added,
                _ => sub_added && dave_added,
            }
        }
        C::UnlockOnAnyUpdate | C::UnlockOnExplicitUnlock | C::NeverLocks => {
            // svc-locked is locked out in AD and managed for u-l.
            w.scope.root = dn(USERS);
            w.obj("svc-locked").marker = Some(marker("u-l"));
            let mut rec = user("u-l", "svc-locked", "", "");
            rec.guid = Some(w.guid("svc-locked"));
            let run = |w: &World, was_locked: bool, now_locked: bool| {
                let mut w = World {
                    ad: w.ad.clone(),
                    scope: w.scope.clone(),
                    policy: w.policy.clone(),
                    allow: w.allow,
                    ..World::new()
                };
                let mut before = rec.clone();
                before.user.locked = was_locked;
                w.before.users.insert("u-l".into(), before.clone());
                w.mirror.users.insert("u-l".into(), before);
                let mut now = rec.user.clone();
                now.locked = now_locked;
                now.given_name = "Renamed".into();
                let change = CloudChange {
                    seq: 1,
                    at: String::new(),
                    body: ChangeBody::UserUpsert { user: now },
                };
                let mut work = Work::default();
                w.mirror.fold(
                    &[change],
                    !w.policy.sync_account_locked_out_status,
                    &mut work,
                );
                w.work = work;
                let (ops, _) = all_ops(&w);
                let unlocked = ops.iter().any(|(k, _, _)| *k == OpKind::Unlock);
                let locked = ops.iter().any(|(k, _, a)| {
                    *k == OpKind::Disable
                        || (*k != OpKind::Unlock && a.contains(&"lockoutTime".into()))
                });
                (unlocked, locked)
            };
            let update = run(&w, false, false);
            let explicit = run(&w, true, false);
            let lock = run(&w, false, true);
            match claim {
                C::UnlockOnAnyUpdate => update.0 && explicit.0,
                C::UnlockOnExplicitUnlock => !update.0 && explicit.0,
                _ => !lock.0 && !lock.1 && !update.1 && !explicit.1,
            }
        }
        C::UsersAdopted | C::UsersCollide => {
            w.sync_user(user("u-bob", "bob", "Bob", "Baker"));
            let (_, p) = w.plan_held();
            match (claim, p.outcomes.get(&ObjKey::User("u-bob".into()))) {
                (C::UsersAdopted, Some(Outcome::Adopted(_))) => true,
                (C::UsersCollide, Some(Outcome::Failed(m))) => m.contains("collides"),
                _ => false,
            }
        }
        C::GroupsAdopted | C::GroupsCollide => {
            w.obj("Engineering").marker = None;
            w.sync_group(group("g-new", "Engineering"));
            let (_, p) = w.plan_held();
            match (claim, p.outcomes.get(&ObjKey::Group("g-new".into()))) {
                (C::GroupsAdopted, Some(Outcome::Adopted(_))) => true,
                (C::GroupsCollide, Some(Outcome::Failed(m))) => m.contains("collides"),
                _ => false,
            }
        }
    }
}

/// Each sentence the wizard, `review` and docs/agent.md say about a policy (one table,
/// `ad_sync_core::policy::POLICIES`) is what the planner does: under each choice its claim
/// holds and no other choice's does, and what a policy says holds whatever is chosen does.
#[test]
fn every_policy_sentence_is_what_the_planner_does() {
    use ad_sync_core::policy::POLICIES;
    for p in POLICIES {
        for c in p.choices {
            let mut policy: Sync = toml::from_str("").unwrap_or_else(|e| panic!("{e}"));
            p.set(&mut policy, c.value);
            assert!(
                holds(c.claim, &policy),
                "{} = {}: the planner does not do what the page says: {:?}: {}",
                p.key,
                c.value,
                c.claim,
                c.does
            );
            for other in p.choices.iter().filter(|o| o.value != c.value) {
                assert!(
                    !holds(other.claim, &policy),
                    "{} = {}: the planner also does what {} promises ({:?})",
                    p.key,
                    c.value,
                    other.value,
                    other.claim
                );
            }
            for (text, claim) in p.always {
                assert!(
                    holds(*claim, &policy),
                    "{} = {}: not true: {text}",
                    p.key,
                    c.value
                );
            }
        }
    }
}

/// Every operation of a plan with everything it writes, values sorted.
fn every_op(users: &[Job], groups: &[Job], removals: &[Job], members: &[Job]) -> Vec<String> {
    let sorted = |v: &HashSet<Vec<u8>>| {
        let mut v: Vec<String> = v
            .iter()
            .map(|x| String::from_utf8_lossy(x).into_owned())
            .collect();
        v.sort();
        v
    };
    users
        .iter()
        .chain(groups)
        .chain(removals)
        .chain(members)
        .flat_map(|j| &j.ops)
        .map(|op| {
            let change = match &op.change {
                Change::Add(attrs) => attrs
                    .iter()
                    .map(|(a, v)| format!("{a}={:?}", sorted(v)))
                    .collect(),
                Change::Rename(rdn) => vec![rdn.clone()],
                Change::Modify(mods) => mods
                    .iter()
                    .map(|m| match m {
                        Mod::Add(a, v) => {
                            format!("+{}={:?}", String::from_utf8_lossy(a), sorted(v))
                        }
                        Mod::Delete(a, v) => {
                            format!("-{}={:?}", String::from_utf8_lossy(a), sorted(v))
                        }
                        Mod::Replace(a, v) => {
                            format!("{}={:?}", String::from_utf8_lossy(a), sorted(v))
                        }
                        Mod::Increment(a, v) => format!("{}+={:?}", String::from_utf8_lossy(a), v),
                    })
                    .collect(),
                Change::Delete => vec!["delete".into()],
            };
            format!("{:?} {} {change:?}", op.kind, op.dn)
        })
        .collect()
}

/// The cloud directory a state holds before each run of the next test. alice (managed, in AD's
/// Engineering) is in the cloud's Engineering (managed), which is nested in All staff (managed:
/// AD's Mailing List), with erin; dave and erin (managed, not in AD any more) are in Operations
/// (not in AD yet); bob (managed, in AD's Engineering) and frank (not created yet) are in no
/// group.
fn stored_directory(w: &World) -> Mirror {
    let mut m = Mirror::default();
    let mut alice = user("u-alice", "alice", "Alice", "Archer");
    alice.guid = Some(w.guid("alice"));
    alice.password_set = true;
    let mut dave = user("u-dave", "dave", "Dave", "Dunn");
    dave.guid = Some(vec![0xd; 16]);
    let mut erin = user("u-erin", "erin", "Erin", "Eaves");
    erin.guid = Some(vec![0xe; 16]);
    let mut bob = user("u-bob", "bob", "Bob", "Baker");
    bob.guid = Some(w.guid("bob"));
    for u in [
        alice,
        dave,
        erin,
        bob,
        user("u-frank", "frank", "Frank", "Fox"),
    ] {
        m.users.insert(u.user.id.clone(), u);
    }
    let mut eng = group("g-eng", "Engineering");
    eng.guid = Some(w.guid("Engineering"));
    let mut all = group("g-all", "All staff");
    all.guid = Some(w.guid("Mailing List"));
    for g in [eng, all, group("g-ops", "Operations")] {
        m.groups.insert(g.id.clone(), g);
    }
    for (g, t, id) in [
        ("g-eng", MemberType::User, "u-alice"),
        ("g-all", MemberType::Group, "g-eng"),
        ("g-all", MemberType::User, "u-erin"),
        ("g-ops", MemberType::User, "u-dave"),
        ("g-ops", MemberType::User, "u-erin"),
    ] {
        m.edges.insert((g.into(), t, id.into()));
    }
    m.cursor = 10;
    m
}

#[test]
fn a_run_planned_on_what_it_needs_is_planned_as_on_the_whole() {
    use crate::mirror::Needs;
    use crate::state::State;
    use ad_sync_core::cloud::api::{Change as C, ChangeBody as B, Group, Membership};
    let w = World::new();
    let stored = stored_directory(&w);
    let change = |seq: i64, body: B| C {
        seq,
        at: String::new(),
        body,
    };
    let upsert = |u: &UserRec| B::UserUpsert {
        user: u.user.clone(),
    };
    let member = |g: &str, t: MemberType, id: &str, add: bool| {
        let m = Membership {
            group_id: g.into(),
            group: g.into(),
            member_id: id.into(),
            member: id.into(),
            member_type: t,
        };
        if add {
            B::MembershipAdd(m)
        } else {
            B::MembershipRemove(m)
        }
    };
    let mut renamed_bob = stored.users["u-bob"].clone();
    renamed_bob.user.surname = "Baker-Smith".into();
    // A new cloud user whose name is bob's: his AD account is managed (for u-bob, not loaded
    // in this run), so it is not taken over again.
    let second_bob = user("u-bob2", "bob", "Bob", "Again");
    let cases: Vec<(&str, Vec<B>)> = vec![
        ("a user changed", vec![upsert(&renamed_bob)]),
        (
            "a member added",
            vec![member("g-eng", MemberType::User, "u-frank", true)],
        ),
        (
            "a member removed",
            vec![member("g-eng", MemberType::User, "u-alice", false)],
        ),
        (
            "a nested group removed",
            vec![B::GroupRemove {
                id: "g-eng".into(),
                name: "Engineering".into(),
            }],
        ),
        (
            "a managed user removed",
            vec![B::UserRemove {
                id: "u-alice".into(),
                username: "alice".into(),
            }],
        ),
        (
            "a name taken by a managed account",
            vec![upsert(&second_bob)],
        ),
        (
            "a group nested",
            vec![member("g-all", MemberType::Group, "g-ops", true)],
        ),
        (
            "a password",
            vec![B::UserPassword {
                id: "u-dave".into(),
                username: "dave".into(),
                sealed_password: None,
            }],
        ),
        (
            "a new group with a member",
            vec![
                B::GroupUpsert {
                    group: Group {
                        id: "g-new".into(),
                        name: "New".into(),
                        links: Vec::new(),
                    },
                },
                member("g-new", MemberType::User, "u-erin", true),
            ],
        ),
        (
            "an unknown user removed",
            vec![B::UserRemove {
                id: "u-nobody".into(),
                username: "nobody".into(),
            }],
        ),
    ];
    for match_mode in [false, true] {
        for (name, bodies) in &cases {
            let changes: Vec<C> = bodies
                .iter()
                .enumerate()
                .map(|(n, b)| change(11 + n as i64, b.clone()))
                .collect();
            let case = format!("{name} (match mode {match_mode})");
            let mut stored_after = Vec::new();
            let mut planned = Vec::new();
            for partial in [false, true] {
                let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
                let mut state = State::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
                state
                    .commit(&Mirror::default(), &stored, &[])
                    .unwrap_or_else(|e| panic!("{e}"));
                let loaded = if partial {
                    state.load_for(&Needs::of(&changes, match_mode))
                } else {
                    state.load()
                }
                .unwrap_or_else(|e| panic!("{e}"));
                if partial && *name == "a user changed" {
                    assert!(
                        !loaded.users.contains_key("u-frank") && loaded.others.contains(&[0xd; 16]),
                        "{case}: a user the run does not touch is loaded, or its objectGUID is missing"
                    );
                }
                let mut w = World::new();
                w.policy.adopt_existing_users = true;
                if match_mode {
                    w.policy.group_membership_sync_type = MembershipSyncType::Match;
                }
                w.before = loaded.clone();
                w.mirror = loaded;
                w.mirror.fold(&changes, true, &mut w.work);
                let (lookup, p) = w.plan_held();
                let (p2, members) = plan_and_members(&w);
                planned.push((
                    lookup.groups.clone(),
                    every_op(&p2.users, &p2.groups, &p2.removals, &members),
                    lines(&p),
                    p.blocked.as_ref().map(|b| (b.planned, b.limit, b.managed)),
                    w.work.removed_users.clone(),
                    w.work.removed_groups.clone(),
                ));
                state
                    .commit(&w.before, &w.mirror, &[])
                    .unwrap_or_else(|e| panic!("{e}"));
                let after = state.load().unwrap_or_else(|e| panic!("{e}"));
                stored_after.push((after.users, after.groups, after.edges, after.cursor));
            }
            assert_eq!(planned[0], planned[1], "{case}: planned differently");
            assert_eq!(
                stored_after[0], stored_after[1],
                "{case}: stored differently"
            );
        }
    }
}

/// A membership change compares the members it names, not the whole group: drift among the
/// group's other members is the full comparison's (start-up, every 6 hours), so a run touching
/// a group of 10,000 members loads and compares the few it changes. A group upserted in the
/// same run, one not in AD yet, and every group in `match` mode are compared whole.
#[test]
fn a_membership_change_compares_only_the_members_it_names() {
    use ad_sync_core::cloud::api::{Change as C, ChangeBody as B, Group, Membership};
    let base = World::new();
    let stored = stored_directory(&base);
    let member = |g: &str, id: &str, add: bool| {
        let m = Membership {
            group_id: g.into(),
            group: g.into(),
            member_id: id.into(),
            member: id.into(),
            member_type: MemberType::User,
        };
        if add {
            B::MembershipAdd(m)
        } else {
            B::MembershipRemove(m)
        }
    };
    let engineering = B::GroupUpsert {
        group: Group {
            id: "g-eng".into(),
            name: "Engineering".into(),
            links: Vec::new(),
        },
    };
    let run = |bodies: Vec<B>, match_mode: bool, stored: &Mirror| -> Vec<String> {
        let mut w = World::new();
        if match_mode {
            w.policy.group_membership_sync_type = MembershipSyncType::Match;
        }
        w.before = stored.clone();
        w.mirror = stored.clone();
        let changes: Vec<C> = bodies
            .into_iter()
            .enumerate()
            .map(|(n, body)| C {
                seq: 11 + n as i64,
                at: String::new(),
                body,
            })
            .collect();
        w.mirror.fold(&changes, true, &mut w.work);
        let mut v = member_changes(&w, ENG);
        v.sort();
        v
    };
    let value = |g: &[u8]| String::from_utf8_lossy(&guid_ref(g)).into_owned();
    let (alice, bob, dave) = (
        value(&base.guid("alice")),
        value(&base.guid("bob")),
        value(&[0xd; 16]),
    );
    // AD's Engineering has alice and bob (managed); the cloud's has alice only: bob is drift.
    let mut expected = vec![format!("+{dave}"), format!("-{bob}")];
    expected.sort();
    for (name, bodies, match_mode, want) in [
        (
            "a member added",
            vec![member("g-eng", "u-dave", true)],
            false,
            vec![format!("+{dave}")],
        ),
        (
            "a member removed",
            vec![member("g-eng", "u-alice", false)],
            false,
            vec![format!("-{alice}")],
        ),
        (
            "a member added to a group upserted in the same run",
            vec![engineering.clone(), member("g-eng", "u-dave", true)],
            false,
            expected.clone(),
        ),
        (
            "a member added in match mode",
            vec![member("g-eng", "u-dave", true)],
            true,
            expected.clone(),
        ),
    ] {
        assert_eq!(run(bodies, match_mode, &stored), want, "{name}");
    }
    // A group the agent has not made in AD yet gets every member once made (here: adopted,
    // its members compared whole), whichever change named it.
    let mut unmade = stored.clone();
    if let Some(g) = unmade.groups.get_mut("g-eng") {
        g.guid = None;
    }
    let mut w = World::new();
    w.policy.adopt_existing_groups = true;
    w.before = unmade.clone();
    w.mirror = unmade;
    w.mirror.fold(
        &[C {
            seq: 11,
            at: String::new(),
            body: member("g-eng", "u-dave", true),
        }],
        true,
        &mut w.work,
    );
    assert!(w.work.delta("g-eng").is_none(), "compared whole");
}

#[test]
fn a_group_read_without_members_gets_the_named_ones_from_their_member_of() {
    use ad_sync_core::cloud::api::Membership;
    let mut w = World::new();
    let eng = w.managed_engineering();
    w.mirror.groups.insert(eng.id.clone(), eng);
    let eng_guid = w.guid("Engineering");
    let g = |b: u8| vec![b; 16];
    // (cloud id, objectGUID in the mirror), and what AD says of that member.
    struct Member {
        id: &'static str,
        mirror_guid: Option<Vec<u8>>,
        ad_guid: Vec<u8>,
        marker: bool,
        in_group: bool,
        partial: bool,
    }
    let table = [
        // In the group, by the mirror's objectGUID.
        (
            Member {
                id: "u-in",
                mirror_guid: Some(g(1)),
                ad_guid: g(1),
                marker: false,
                in_group: true,
                partial: false,
            },
            "member",
        ),
        // Not in the group.
        (
            Member {
                id: "u-out",
                mirror_guid: Some(g(2)),
                ad_guid: g(2),
                marker: false,
                in_group: false,
                partial: false,
            },
            "absent",
        ),
        // Re-created by hand: a new objectGUID, found by its marker, in the group.
        (
            Member {
                id: "u-new",
                mirror_guid: Some(g(3)),
                ad_guid: g(4),
                marker: true,
                in_group: true,
                partial: false,
            },
            "member",
        ),
        // memberOf in ranges that do not show the group: asked about one by one.
        (
            Member {
                id: "u-many",
                mirror_guid: Some(g(5)),
                ad_guid: g(5),
                marker: false,
                in_group: false,
                partial: true,
            },
            "ask",
        ),
        // memberOf in ranges that show the group: a member.
        (
            Member {
                id: "u-many-in",
                mirror_guid: Some(g(6)),
                ad_guid: g(6),
                marker: false,
                in_group: true,
                partial: true,
            },
            "member",
        ),
        // Not in AD (no objectGUID yet): nothing to read.
        (
            Member {
                id: "u-unmade",
                mirror_guid: None,
                ad_guid: g(7),
                marker: false,
                in_group: true,
                partial: false,
            },
            "absent",
        ),
    ];
    for (m, _) in &table {
        let mut rec = user(m.id, m.id, "A", "B");
        rec.guid = m.mirror_guid.clone();
        w.mirror.users.insert(m.id.into(), rec);
        w.mirror.fold(
            &[ad_sync_core::cloud::api::Change {
                seq: 1,
                at: String::new(),
                body: ad_sync_core::cloud::api::ChangeBody::MembershipAdd(Membership {
                    group_id: "g-eng".into(),
                    group: "Engineering".into(),
                    member_id: m.id.into(),
                    member: m.id.into(),
                    member_type: MemberType::User,
                }),
            }],
            true,
            &mut w.work,
        );
    }
    let lookup = Lookup::new(&w.mirror, &w.work, &w.policy, &w.scope);
    assert_eq!(lookup.slim_terms(), vec![ad::guid_filter(&eng_guid)]);
    assert!(
        !lookup.terms.contains(&ad::guid_filter(&eng_guid)),
        "Engineering is read with its members too"
    );
    let read: Vec<Obj> = table
        .iter()
        .filter(|(m, _)| m.mirror_guid.is_some())
        .map(|(m, _)| Obj {
            guid: m.ad_guid.clone(),
            dn: format!("CN={},OU=Cloud Users,DC=example,DC=com", m.id),
            marker: m.marker.then(|| marker(m.id)),
            member_of: if m.in_group {
                vec![(eng_guid.clone(), ENG.to_string())]
            } else {
                Vec::new()
            },
            member_of_partial: m.partial,
            ..Obj::default()
        })
        .collect();
    let mut groups = vec![Obj {
        guid: eng_guid.clone(),
        dn: ENG.into(),
        // A slim read has no members; anything here is not AD's answer.
        members: vec![(g(9), "CN=stale".into())],
        ..Obj::default()
    }];
    let refs: Vec<&Obj> = read.iter().collect();
    let unanswered = named_members_of(&mut groups, &lookup, &refs);
    let got: HashSet<Vec<u8>> = groups[0].members.iter().map(|(g, _)| g.clone()).collect();
    for (m, want) in &table {
        let (is_member, asked) = (
            got.contains(&m.ad_guid),
            unanswered.contains(&(0, m.ad_guid.clone())),
        );
        let saw = match (is_member, asked) {
            (true, false) => "member",
            (false, true) => "ask",
            (false, false) => "absent",
            (true, true) => "both",
        };
        assert_eq!(saw, *want, "{}", m.id);
    }
    assert_eq!(got.len(), 3, "{got:?}");
}

#[test]
fn the_slim_read_is_every_attribute_but_the_members() {
    assert_eq!(ad::ATTRS.last(), Some(&"member"));
    assert_eq!(ad::SLIM_GROUP_ATTRS, &ad::ATTRS[..ad::ATTRS.len() - 1]);
    assert!(!ad::SLIM_GROUP_ATTRS.contains(&"member"));
}
