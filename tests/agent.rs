//! The agent end to end: a real `ad-sync-cloud` holds users and groups, `ad-sync-setup install`
//! enrolls an agent, and `ad-sync-agent run` mirrors the cloud into the real Samba DC. Each test
//! has its own OU (its Root User container) with its own sync group in it, and its own cloud.

mod support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::RwLock;
use support::cloud::{CloudServer, block_on};
use support::{Spec, bed, testbed};

/// The installer, with the agent it installs built beside it.
fn setup_bin() -> &'static str {
    support::bins::setup_with_agent()
}
fn agent_bin() -> &'static str {
    support::bins::agent()
}
const DOMAIN: &str = "DC=example,DC=com";
const USER_PASSWORD: &str = "Cl0ud!User-Pass-7781";

/// The DC-restart test takes this for writing; every other test for reading.
static DC: RwLock<()> = RwLock::new(());

struct Env {
    cloud: CloudServer,
    dir: PathBuf,
    config: PathBuf,
    ou: String,
    sync_group: String,
}

async fn admin_on(dc: &testbed::Dc) -> ldap3::Ldap {
    dc.admin().await.unwrap_or_else(|e| panic!("{e}"))
}

fn ldap_add(dn: &str, attrs: Vec<(&str, Vec<&str>)>) {
    let attrs: Vec<(&str, HashSet<&str>)> = attrs
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().collect()))
        .collect();
    let dc = &bed().dc1;
    block_on(async {
        let mut l = admin_on(dc).await;
        l.add(dn, attrs)
            .await
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("add {dn}: {e}"));
    });
}

/// Attributes of every object matching `filter` under `base`, by sAMAccountName.
fn search(base: &str, filter: &str) -> Vec<ldap3::SearchEntry> {
    let dc = &bed().dc1;
    block_on(async {
        let mut l = admin_on(dc).await;
        let (rs, _) = l
            .search(
                base,
                ldap3::Scope::Subtree,
                filter,
                vec![
                    "sAMAccountName",
                    "userAccountControl",
                    "givenName",
                    "sn",
                    "displayName",
                    "mail",
                    "userPrincipalName",
                    "member",
                    "memberOf",
                    "lockoutTime",
                    "adminDescription",
                    "objectGUID",
                    "groupType",
                ],
            )
            .await
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("search {base}: {e}"));
        rs.into_iter().map(ldap3::SearchEntry::construct).collect()
    })
}

fn attr(e: &ldap3::SearchEntry, a: &str) -> Option<String> {
    e.attrs.get(a).and_then(|v| v.first().cloned())
}

fn user_in(env: &Env, sam: &str) -> Option<ldap3::SearchEntry> {
    search(&env.ou, &format!("(sAMAccountName={sam})"))
        .into_iter()
        .next()
}

fn users_in_ou(env: &Env) -> Vec<String> {
    let mut v: Vec<String> = search(&env.ou, "(&(objectClass=user)(!(objectClass=computer)))")
        .iter()
        .filter_map(|e| attr(e, "sAMAccountName"))
        .collect();
    v.sort();
    v
}

impl Env {
    /// A cloud with fast heartbeats, an OU with a sync group, and an enrolled agent installed
    /// under a prefix with `sync` lines in its config.
    fn new(tag: &str, sync: &str) -> Env {
        let cloud = CloudServer::start(
            tag,
            &["--heartbeat-interval", "1s", "--primary-timeout", "3s"],
        );
        cloud.admin_ok(&["domain", "add", DOMAIN]);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("agent-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let ou = format!("OU=t-{tag},{}", testbed::OU_STAFF);
        let sync_group = format!("CN=Sync {tag},{ou}");
        ldap_add(
            &ou,
            vec![("objectClass", vec!["top", "organizationalUnit"])],
        );
        ldap_add(
            &sync_group,
            vec![
                ("objectClass", vec!["top", "group"]),
                ("sAMAccountName", vec![&format!("sync-{tag}")]),
                ("groupType", vec!["-2147483646"]),
            ],
        );
        let config = install(&cloud, &dir.join("a"), &ou, &sync_group, sync);
        Env {
            cloud,
            dir,
            config,
            ou,
            sync_group,
        }
    }

    fn cloud(&self, args: &[&str]) -> String {
        self.cloud.admin_ok(args)
    }

    fn add_user(&self, name: &str) {
        self.cloud(&[
            "user",
            "add",
            name,
            "--given",
            "Given",
            "--surname",
            &format!("Sur{name}"),
            "--email",
            &format!("{name}@mail.example.com"),
        ]);
    }

    fn set_password(&self, name: &str) {
        let f = self.dir.join("pw.txt");
        std::fs::write(&f, USER_PASSWORD).unwrap_or_else(|e| panic!("{e}"));
        self.cloud(&[
            "user",
            "set-password",
            name,
            "--password-file",
            &f.display().to_string(),
        ]);
    }

    fn run(&self, extra: &[&str]) -> Output {
        agent(&self.config, extra)
    }

    /// `--once` that must succeed; its stdout and stderr.
    fn sync(&self) -> String {
        let out = self.run(&[]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "agent --once failed: {text}");
        text
    }

    fn results(&self) -> Vec<(i64, String, String)> {
        let store = ad_sync_cloud::server::store::Store::open(&self.cloud.db)
            .unwrap_or_else(|e| panic!("{e}"));
        store
            .results(DOMAIN)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|(s, st, m)| (s, st.as_str().to_string(), m))
            .collect()
    }
}

fn install(cloud: &CloudServer, prefix: &Path, ou: &str, sync_group: &str, sync: &str) -> PathBuf {
    let key = cloud.issue_key(DOMAIN, None);
    let mut spec = Spec::good();
    spec.root_dn = ou.to_string();
    spec.sync_group_dn = Some(sync_group.to_string());
    spec.cloud_url = Some(cloud.url.clone());
    spec.cloud_ca = Some(cloud.ca.clone());
    spec.connect_key = Some(key);
    let answers = spec.write();
    let text = std::fs::read_to_string(&answers).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&answers, format!("{text}\n[sync]\n{sync}\n")).unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(setup_bin())
        .args(["install", "--answers"])
        .arg(&answers)
        .arg("--prefix")
        .arg(prefix)
        .arg("--no-start")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "install: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    prefix.join("etc/ad-sync/agent.toml")
}

fn agent(config: &Path, extra: &[&str]) -> Output {
    let base = config
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("config path"));
    Command::new(agent_bin())
        .args(["run", "--once", "--config"])
        .arg(config)
        .arg("--state-dir")
        .arg(base.join("var/lib/ad-sync"))
        .arg("--log-dir")
        .arg(base.join("var/log/ad-sync"))
        .args(extra)
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap_or_else(|e| panic!("run agent: {e}"))
}

fn can_bind(sam: &str, password: &str) -> bool {
    block_on(async {
        let settings = ldap3::LdapConnSettings::new().set_connector(
            native_tls::TlsConnector::builder()
                .danger_accept_invalid_certs(true)
                .build()
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let (conn, mut l) =
            ldap3::LdapConnAsync::with_settings(settings, "ldaps://dc1.example.com")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        ldap3::drive!(conn);
        let ok = l
            .simple_bind(&format!("{sam}@example.com"), password)
            .await
            .map(|r| r.rc == 0)
            .unwrap_or(false);
        let _ = l.unbind().await;
        ok
    })
}

fn uac(e: &ldap3::SearchEntry) -> i64 {
    attr(e, "userAccountControl")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn users_groups_memberships_passwords_and_renames_reach_ad() {
    let _dc = DC.read();
    let env = Env::new("basic", "group_membership_sync_type = \"match\"");
    env.add_user("ada");
    env.add_user("bob");
    env.cloud(&["group", "add", "Engineers"]);
    env.cloud(&["group", "add", "Staff All"]);
    env.cloud(&["group", "add-member", "Engineers", "ada"]);
    env.cloud(&["group", "add-member", "Staff All", "Engineers", "--group"]);
    env.set_password("ada");
    let out = env.sync();
    assert!(out.contains("primary"), "{out}");

    assert_eq!(users_in_ou(&env), vec!["ada", "bob"]);
    let ada = user_in(&env, "ada").unwrap_or_else(|| panic!("ada not in AD: {out}"));
    assert_eq!(attr(&ada, "givenName").as_deref(), Some("Given"));
    assert_eq!(attr(&ada, "sn").as_deref(), Some("Surada"));
    assert_eq!(attr(&ada, "displayName").as_deref(), Some("Given Surada"));
    assert_eq!(attr(&ada, "mail").as_deref(), Some("ada@mail.example.com"));
    assert_eq!(
        attr(&ada, "userPrincipalName").as_deref(),
        Some("ada@example.com")
    );
    assert_eq!(uac(&ada) & 2, 0, "ada has a password and is enabled");
    // bob has no password yet: created, but disabled until one is set.
    let bob = user_in(&env, "bob").unwrap_or_else(|| panic!("bob"));
    assert_eq!(uac(&bob) & 2, 2);
    assert!(
        can_bind("ada", USER_PASSWORD),
        "the cloud's password lets ada log on"
    );

    // Groups: security groups beside the sync group, nested in it; match mode puts ada
    // directly into Staff All as well.
    let eng = search(&env.ou, "(sAMAccountName=Engineers)");
    assert_eq!(eng.len(), 1, "{out}");
    assert_eq!(attr(&eng[0], "groupType").as_deref(), Some("-2147483646"));
    let member_of: Vec<String> = ada.attrs.get("memberOf").cloned().unwrap_or_default();
    assert!(
        member_of.iter().any(|g| g.starts_with("CN=Engineers")),
        "{member_of:?}"
    );
    assert!(
        member_of.iter().any(|g| g.starts_with("CN=Staff All")),
        "{member_of:?}"
    );
    let sync = search(&env.sync_group, "(objectClass=group)");
    let nested = sync[0].attrs.get("member").cloned().unwrap_or_default();
    assert_eq!(nested.len(), 2, "{nested:?}");

    // Every change is acknowledged as applied.
    let results = env.results();
    assert!(!results.is_empty());
    assert!(
        results.iter().all(|(_, s, _)| s == "applied"),
        "{results:?}"
    );

    // A second run with nothing new changes nothing.
    let again = env.sync();
    assert!(again.contains("changes: 0"), "{again}");

    // Update, rename, suspend, password later, membership removal.
    let guid = ada.bin_attrs.get("objectGUID").cloned();
    assert!(guid.is_some());
    env.cloud(&[
        "user",
        "update",
        "ada",
        "--surname",
        "Lovelace",
        "--no-email",
    ]);
    env.cloud(&["user", "rename", "ada", "ada.l"]);
    env.cloud(&["user", "suspend", "ada.l"]);
    env.set_password("bob");
    env.cloud(&["group", "remove-member", "Engineers", "ada.l"]);
    env.cloud(&["group", "rename", "Engineers", "Engineering"]);
    let out = env.sync();
    assert!(user_in(&env, "ada").is_none(), "{out}");
    let ada = user_in(&env, "ada.l").unwrap_or_else(|| panic!("renamed: {out}"));
    assert_eq!(
        ada.bin_attrs.get("objectGUID").cloned(),
        guid,
        "the same AD object, renamed"
    );
    assert!(ada.dn.starts_with("CN=ada.l,"), "{}", ada.dn);
    assert_eq!(attr(&ada, "sn").as_deref(), Some("Lovelace"));
    assert_eq!(attr(&ada, "mail"), None);
    assert_eq!(uac(&ada) & 2, 2, "suspended");
    assert!(
        ada.attrs.get("memberOf").is_none_or(|v| v.is_empty()),
        "{:?}",
        ada.attrs.get("memberOf")
    );
    let bob = user_in(&env, "bob").unwrap_or_else(|| panic!("bob"));
    assert_eq!(uac(&bob) & 2, 0, "enabled once its password is set");
    assert!(can_bind("bob", USER_PASSWORD));
    assert_eq!(
        search(&env.ou, "(sAMAccountName=Engineering)").len(),
        1,
        "{out}"
    );

    // Moved in AD (within the container): still tracked by objectGUID.
    env.cloud(&["user", "unsuspend", "ada.l"]);
    let out = env.sync();
    let ada = user_in(&env, "ada.l").unwrap_or_else(|| panic!("{out}"));
    assert_eq!(uac(&ada) & 2, 0, "{out}");
}

#[test]
fn disconnection_policies_remove_disable_retain() {
    let _dc = DC.read();
    for (tag, user_policy, member_policy, group_policy) in [
        ("prm", "remove", "remove", "remove"),
        ("pds", "disable", "remove", "retain"),
        ("prt", "retain", "retain", "retain"),
    ] {
        let env = Env::new(
            tag,
            &format!(
                "user_disconnection_action = \"{user_policy}\"\nmembership_disconnection_action = \"{member_policy}\"\ngroup_disconnection_action = \"{group_policy}\"\ndeletion_threshold_percent = 100"
            ),
        );
        let [u1n, u2n, u3n, g1n] = ["1", "2", "3", "g"].map(|s| format!("{tag}{s}"));
        for u in [&u1n, &u2n, &u3n] {
            env.add_user(u);
        }
        env.cloud(&["group", "add", &g1n]);
        env.cloud(&["group", "add-member", &g1n, &u1n]);
        env.sync();
        assert_eq!(
            users_in_ou(&env),
            vec![u1n.clone(), u2n.clone(), u3n.clone()]
        );
        env.cloud(&["user", "remove", &u1n]);
        env.cloud(&["group", "remove", &g1n]);
        let out = env.sync();
        let u1 = user_in(&env, &u1n);
        let g1 = search(&env.ou, &format!("(sAMAccountName={g1n})"));
        match user_policy {
            "remove" => assert!(u1.is_none(), "{tag}: {out}"),
            "disable" => {
                let u1 = u1.unwrap_or_else(|| panic!("{tag}"));
                assert_eq!(uac(&u1) & 2, 2, "{tag}");
                assert_eq!(
                    attr(&u1, "adminDescription"),
                    None,
                    "{tag}: no longer managed"
                );
            }
            _ => {
                let u1 = u1.unwrap_or_else(|| panic!("{tag}"));
                assert_eq!(
                    attr(&u1, "adminDescription"),
                    None,
                    "{tag}: no longer managed"
                );
            }
        }
        match group_policy {
            "remove" => assert!(g1.is_empty(), "{tag}: {out}"),
            _ => {
                assert_eq!(g1.len(), 1, "{tag}");
                let members = g1[0].attrs.get("member").cloned().unwrap_or_default();
                if member_policy == "retain" {
                    assert_eq!(members.len(), 1, "{tag}: membership retained");
                } else {
                    assert!(members.is_empty(), "{tag}: {members:?}");
                }
            }
        }
        // The others are untouched.
        assert!(user_in(&env, &u2n).is_some() && user_in(&env, &u3n).is_some());
    }
}

#[test]
fn collisions_protected_accounts_threshold_and_dry_run() {
    let _dc = DC.read();
    let env = Env::new("safety", "user_disconnection_action = \"remove\"");
    // An unmanaged account already has the name the cloud wants.
    let dc = &bed().dc1;
    let existing = block_on(async {
        let mut l = admin_on(dc).await;
        testbed::add_user(&mut l, &env.ou, "carol", "512").await
    })
    .unwrap_or_else(|e| panic!("{e}"));
    env.add_user("carol");
    // Domain Admins' member svc-admin is outside the container and protected anyway.
    env.add_user(testbed::accounts::DOMAIN_ADMIN);
    for i in 0..10 {
        env.add_user(&format!("d{i}"));
    }

    // Dry run: every planned operation is printed, nothing changes, nothing is acknowledged.
    let out = env.run(&["--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("would create user CN=d0,"), "{text}");
    assert!(users_in_ou(&env) == vec!["carol"], "dry run changed AD");
    assert!(env.results().is_empty());

    let out = env.run(&[]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "some changes fail: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = env.results();
    let failed: Vec<_> = results.iter().filter(|(_, s, _)| s == "failed").collect();
    assert_eq!(failed.len(), 2, "{results:?}");
    assert!(
        failed.iter().any(|(_, _, m)| m.contains("carol")
            && m.contains("not managed by ad-sync")
            && m.contains(&existing)),
        "{failed:?}"
    );
    assert!(
        failed
            .iter()
            .any(|(_, _, m)| m.contains(testbed::accounts::DOMAIN_ADMIN)),
        "{failed:?}"
    );
    // carol is untouched: no marker, no name change.
    let carol = user_in(&env, "carol").unwrap_or_else(|| panic!("carol"));
    assert_eq!(attr(&carol, "adminDescription"), None);
    assert_eq!(attr(&carol, "sn"), None);
    let admin_acct = search(
        DOMAIN,
        &format!("(sAMAccountName={})", testbed::accounts::DOMAIN_ADMIN),
    )
    .into_iter()
    .next()
    .unwrap_or_else(|| panic!("svc-admin"));
    assert_eq!(attr(&admin_acct, "adminDescription"), None);

    // Deletion threshold: 10 managed, 10% is 1; removing 3 stops the run and changes nothing.
    for i in 0..3 {
        env.cloud(&["user", "remove", &format!("d{i}")]);
    }
    let out = env.run(&[]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("deletion threshold") && err.contains("would delete 3"),
        "{err}"
    );
    assert!(user_in(&env, "d0").is_some(), "nothing was deleted");
    // The admin allows it once.
    let out = env.run(&["--allow-deletions", "3"]);
    assert!(
        out.status.success() || out.status.code() == Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(user_in(&env, "d0").is_none() && user_in(&env, "d3").is_some());
}

#[test]
fn lockout_is_cleared_by_an_unlock_in_the_cloud() {
    let _dc = DC.read();
    let env = Env::new("lock", "sync_account_locked_out_status = true");
    env.add_user("lou");
    env.set_password("lou");
    env.sync();
    // Locked in AD the way it happens: wrong passwords past the threshold (5).
    for _ in 0..6 {
        can_bind("lou", "wrong-password");
    }
    let locked = |e: &ldap3::SearchEntry| attr(e, "lockoutTime").is_some_and(|v| v != "0");
    assert!(locked(
        &user_in(&env, "lou").unwrap_or_else(|| panic!("lou"))
    ));
    // With sync_account_locked_out_status = true, an ordinary update does not unlock ...
    env.cloud(&["user", "update", "lou", "--given", "Lou"]);
    env.sync();
    assert!(locked(
        &user_in(&env, "lou").unwrap_or_else(|| panic!("lou"))
    ));
    // ... an explicit unlock in the cloud does.
    env.cloud(&["user", "lock", "lou"]);
    env.cloud(&["user", "unlock", "lou"]);
    env.sync();
    assert!(!locked(
        &user_in(&env, "lou").unwrap_or_else(|| panic!("lou"))
    ));
    assert!(can_bind("lou", USER_PASSWORD));
}

#[test]
fn a_killed_agent_resumes_without_duplicates_and_a_standby_takes_over() {
    let _dc = DC.read();
    let env = Env::new("failover", "");
    for i in 0..60 {
        env.add_user(&format!("k{i:02}"));
    }
    // Killed mid-run: SIGKILL as soon as the first users appear.
    let base = env
        .config
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("base"));
    let mut child = Command::new(agent_bin())
        .args(["run", "--once", "--concurrency", "1", "--config"])
        .arg(&env.config)
        .arg("--state-dir")
        .arg(base.join("var/lib/ad-sync"))
        .arg("--log-dir")
        .arg("-")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while users_in_ou(&env).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    let partial = users_in_ou(&env).len();
    assert!(
        partial < 60,
        "the kill came after the whole run ({partial})"
    );
    env.sync();
    let all = users_in_ou(&env);
    assert_eq!(all.len(), 60, "nothing lost, nothing doubled: {all:?}");
    let results = env.results();
    assert!(
        results.iter().all(|(_, s, _)| s == "applied"),
        "{results:?}"
    );

    // A second agent, installed on its own, waits as standby while the first calls in.
    let second = install(&env.cloud, &env.dir.join("b"), &env.ou, &env.sync_group, "");
    let out = String::from_utf8_lossy(&agent(&second, &[]).stdout).into_owned();
    assert!(out.contains("standby"), "{out}");
    // The first goes silent; after the primary timeout (3 s) the second is made primary and
    // brings AD to the cloud from its own (empty) state, adopting what the first created.
    env.add_user("late");
    std::thread::sleep(std::time::Duration::from_secs(4));
    let out = agent(&second, &[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("primary"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(users_in_ou(&env).len(), 61);
    let guids: HashSet<Vec<u8>> = search(&env.ou, "(objectClass=user)")
        .iter()
        .filter_map(|e| {
            e.bin_attrs
                .get("objectGUID")
                .and_then(|v| v.first().cloned())
        })
        .collect();
    assert_eq!(guids.len(), 61);
}

#[test]
fn the_dc_going_away_mid_run_loses_and_doubles_nothing() {
    let _dc = DC.write().unwrap_or_else(|p| p.into_inner());
    let env = Env::new("dcdown", "");
    for i in 0..150 {
        env.add_user(&format!("o{i:03}"));
    }
    let base = env
        .config
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("base"))
        .to_path_buf();
    let config = env.config.clone();
    let run = std::thread::spawn(move || {
        Command::new(agent_bin())
            .args(["run", "--once", "--concurrency", "1", "--config"])
            .arg(&config)
            .arg("--state-dir")
            .arg(base.join("var/lib/ad-sync"))
            .arg("--log-dir")
            .arg("-")
            .output()
            .unwrap_or_else(|e| panic!("{e}"))
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while users_in_ou(&env).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    testbed::restart_dc1(bed());
    let out = run.join().unwrap_or_else(|_| panic!("agent thread"));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    // The run stopped when the DC went: nothing committed, nothing acknowledged.
    assert_eq!(
        out.status.code(),
        Some(1),
        "the DC was killed mid-run: {err}"
    );
    assert!(err.contains("domain controller"), "{err}");
    assert!(
        env.results().is_empty(),
        "nothing acknowledged for an unfinished run"
    );
    let partial = users_in_ou(&env).len();
    assert!(partial < 150, "{partial}");
    env.sync();
    assert_eq!(users_in_ou(&env).len(), 150);
    let results = env.results();
    assert_eq!(results.len(), 150, "{results:?}");
    assert!(
        results.iter().all(|(_, s, _)| s == "applied"),
        "{results:?}"
    );
}

#[test]
fn secrets_stay_out_of_output_logs_and_state() {
    let _dc = DC.read();
    let env = Env::new("secrets", "");
    env.add_user("sam");
    env.set_password("sam");
    let text = env.sync();
    let logs = std::fs::read_to_string(
        env.config
            .parent()
            .and_then(Path::parent)
            .and_then(Path::parent)
            .unwrap_or_else(|| panic!("base"))
            .join("var/log/ad-sync/agent.log"),
    )
    .unwrap_or_default();
    assert!(logs.contains("create user CN=sam"), "{logs}");
    for secret in [USER_PASSWORD, testbed::SVC_PASSWORD] {
        assert!(
            !text.contains(secret) && !logs.contains(secret),
            "a secret reached the output or the log"
        );
    }
    let state = std::fs::read(
        env.config
            .parent()
            .and_then(Path::parent)
            .and_then(Path::parent)
            .unwrap_or_else(|| panic!("base"))
            .join("var/lib/ad-sync/state.db"),
    )
    .unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&state).contains(USER_PASSWORD),
        "the password reached the state"
    );
}

#[test]
fn passwords_are_refused_over_plain_ldap_with_a_report_to_the_cloud() {
    let _dc = DC.read();
    let env = Env::new("plain", "");
    // The same agent pointed at dc2, whose LDAPS certificate has expired, with the plain-LDAP
    // fallback allowed: it connects over plain LDAP.
    let text = std::fs::read_to_string(&env.config).unwrap_or_else(|e| panic!("{e}"));
    let text = text
        .replace(
            "dc_host = \"dc1.example.com\"",
            "dc_host = \"dc2.example.com\"",
        )
        .replace(
            "allow_insecure_fallback = false",
            "allow_insecure_fallback = true",
        );
    assert!(
        text.contains("dc2.example.com") && text.contains("allow_insecure_fallback = true"),
        "{text}"
    );
    std::fs::write(&env.config, text).unwrap_or_else(|e| panic!("{e}"));
    env.add_user("pat");
    env.set_password("pat");
    let out = env.run(&[]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("plain LDAP") && err.contains("only sent over an encrypted connection"),
        "{err}"
    );
    assert!(!err.contains(USER_PASSWORD));
    let results = env.results();
    let password = results
        .iter()
        .find(|(_, _, m)| m.contains("password for pat"))
        .unwrap_or_else(|| panic!("no result for the password: {results:?}"));
    assert_eq!(password.1, "failed", "{results:?}");
    assert!(password.2.contains("plain LDAP"), "{results:?}");
}
