//! The agent end to end: a real `ad-sync-cloud` holds users and groups, `ad-sync-setup install`
//! enrolls an agent, and `ad-sync-agent run` mirrors the cloud into the real Samba DC. Each test
//! has its own OU (its Root User container) with its own sync group in it, and its own cloud.

mod support;

use std::collections::{BTreeMap, HashSet};
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
    search_on(&bed().dc1, base, filter)
}

fn search_on(dc: &testbed::Dc, base: &str, filter: &str) -> Vec<ldap3::SearchEntry> {
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
                    "objectSid",
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
        Env::with_cloud(
            tag,
            sync,
            CloudServer::start(
                tag,
                &["--heartbeat-interval", "1s", "--primary-timeout", "3s"],
            ),
        )
    }

    /// The same with a cloud on a fixed port, which can be stopped and started again where the
    /// agent's config points.
    fn restartable(tag: &str, sync: &str) -> Env {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("{e}"));
        Env::with_cloud(
            tag,
            sync,
            CloudServer::start_on(
                tag,
                &format!("127.0.0.1:{port}"),
                &["--heartbeat-interval", "1s", "--primary-timeout", "3s"],
            ),
        )
    }

    fn with_cloud(tag: &str, sync: &str, cloud: CloudServer) -> Env {
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

    /// The folder the agent is installed under (config, state and logs below it).
    fn base(&self) -> &Path {
        self.config
            .parent()
            .and_then(Path::parent)
            .and_then(Path::parent)
            .unwrap_or_else(|| panic!("config path"))
    }

    /// `ad-sync-agent pending` with `extra`: its exit code, and its stdout and stderr.
    fn pending(&self, extra: &[&str]) -> (Option<i32>, String) {
        let base = self.base();
        let out = Command::new(agent_bin())
            .args(["pending", "--config"])
            .arg(&self.config)
            .arg("--state-dir")
            .arg(base.join("var/lib/ad-sync"))
            .args(["--log-dir", "-"])
            .args(extra)
            .env_remove("CREDENTIALS_DIRECTORY")
            .output()
            .unwrap_or_else(|e| panic!("run agent pending: {e}"));
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// The cloud's users from AD (`user list --source ad`), by name.
    fn users_from_ad(&self) -> BTreeMap<String, serde_json::Value> {
        let text = self.cloud(&["user", "list", "--source", "ad", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        v["users"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|u| (u["name"].as_str().unwrap_or_default().to_string(), u))
            .collect()
    }

    /// `ad-sync-agent export --json` with `extra`: its exit code, its report, and all it
    /// printed.
    fn export(&self, extra: &[&str]) -> (Option<i32>, serde_json::Value, String) {
        let out = Command::new(agent_bin())
            .args(["export", "--json", "--log-dir", "-", "--config"])
            .arg(&self.config)
            .arg("--state-dir")
            .arg(self.base().join("var/lib/ad-sync"))
            .args(extra)
            .env_remove("CREDENTIALS_DIRECTORY")
            .output()
            .unwrap_or_else(|e| panic!("ad-sync-agent export: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let v = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
        (out.status.code(), v, format!("{stdout}{stderr}"))
    }

    /// `ad-sync-agent status --json`: its exit code and the status it printed.
    fn status(&self) -> (Option<i32>, serde_json::Value) {
        let out = Command::new(agent_bin())
            .args(["status", "--json", "--config"])
            .arg(&self.config)
            .arg("--state-dir")
            .arg(self.base().join("var/lib/ad-sync"))
            .env_remove("CREDENTIALS_DIRECTORY")
            .output()
            .unwrap_or_else(|e| panic!("run agent status: {e}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let json = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "status --json: {e}: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code(), json)
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

    /// `--once` that ran (some changes may fail); its stdout and stderr.
    fn sync_allowing_failures(&self) -> String {
        let out = self.run(&[]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            matches!(out.status.code(), Some(0 | 4)),
            "agent --once failed: {text}"
        );
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
    install_with(cloud, prefix, Spec::good(), DOMAIN, ou, sync_group, sync)
}

/// `install` for any domain: `spec` names its DC and service account.
fn install_with(
    cloud: &CloudServer,
    prefix: &Path,
    mut spec: Spec,
    domain: &str,
    ou: &str,
    sync_group: &str,
    sync: &str,
) -> PathBuf {
    let key = cloud.issue_key(domain, None);
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

/// Opens the setup wizard on `env`'s install (review mode) and waits until its status panel
/// shows every text in `texts`.
/// The setup wizard opened on `env`'s install (review mode), as an administrator opens it.
fn review_harness(env: &Env) -> egui_kittest::Harness<'static, ad_sync::wizard::WizardApp> {
    let prefix = env.base().to_path_buf();
    egui_kittest::Harness::builder()
        .with_size(egui::vec2(800.0, 600.0))
        .with_max_steps(20)
        .build_eframe(move |cc| {
            let mut options =
                ad_sync::wizard::Options::live(PathBuf::from("/etc/ad-sync/agent.toml"));
            options.prefix = Some(prefix);
            options.elevated = true;
            options.ui_dump = None;
            options.agent_dir = Path::new(agent_bin()).parent().map(Path::to_path_buf);
            ad_sync::wizard::WizardApp::new(&cc.egui_ctx, options).unwrap_or_else(|e| panic!("{e}"))
        })
}

/// Every label and value the wizard shows now.
fn review_screen(h: &egui_kittest::Harness<'_, ad_sync::wizard::WizardApp>) -> String {
    use egui_kittest::kittest::{NodeT, Queryable};
    h.query_all_by(|_| true)
        .filter_map(|n| {
            n.accesskit_node()
                .label()
                .or_else(|| n.accesskit_node().value())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Opens the setup wizard on `env`'s install (review mode), clicks the button `label` once it
/// is there, and waits until the page shows `answer`.
fn review_click(env: &Env, label: &str, answer: &str) {
    use egui_kittest::kittest::Queryable;
    let mut h = review_harness(env);
    let screen = review_screen;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut clicked: Option<std::time::Instant> = None;
    loop {
        h.step();
        let shown = screen(&h);
        if clicked.is_some() && shown.contains(answer) {
            return;
        }
        // Clicked again when nothing answered the click within 3 s (a click that arrived
        // while the page was still laying out its checks); the request is idempotent.
        let waiting = shown.contains("Asking the agent");
        if !waiting
            && clicked.is_none_or(|t| t.elapsed() > std::time::Duration::from_secs(3))
            && let Some(b) = h.query_by_label(label)
        {
            b.click_accesskit();
            clicked = Some(std::time::Instant::now());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "review mode did not answer {label}:\n{}",
            screen(&h)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn review_shows(env: &Env, texts: &[&str]) {
    let mut h = review_harness(env);
    let screen = review_screen;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        h.step();
        let shown = screen(&h);
        if texts.iter().all(|t| shown.contains(t)) {
            assert!(
                shown.contains("Agent status: needs attention"),
                "amber: {shown}"
            );
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "review mode does not show {texts:?}:\n{shown}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The `{"progress": {...}}` lines a `--json` run printed on standard error, in order.
fn progress_lines(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .filter(|l| l.starts_with("{\"progress\""))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["progress"].clone())
        .collect()
}

/// `run --once` of an installed agent, with its state and logs under the install prefix.
fn agent(config: &Path, extra: &[&str]) -> Output {
    let base = config
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("config path"));
    run_once(
        config,
        &base.join("var/lib/ad-sync"),
        &base.join("var/log/ad-sync"),
        extra,
    )
}

fn run_once(config: &Path, state_dir: &Path, log_dir: &Path, extra: &[&str]) -> Output {
    Command::new(agent_bin())
        .args(["run", "--once", "--config"])
        .arg(config)
        .arg("--state-dir")
        .arg(state_dir)
        .arg("--log-dir")
        .arg(log_dir)
        .args(extra)
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap_or_else(|e| panic!("run agent: {e}"))
}

/// An LDAPS connection to dc1, bound as `sam` when the DC takes the password.
async fn ldaps_as(sam: &str, password: &str) -> (ldap3::Ldap, bool) {
    let settings = ldap3::LdapConnSettings::new().set_connector(
        native_tls::TlsConnector::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let (conn, mut l) = ldap3::LdapConnAsync::with_settings(settings, "ldaps://dc1.example.com")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    ldap3::drive!(conn);
    let ok = l
        .simple_bind(&format!("{sam}@example.com"), password)
        .await
        .map(|r| r.rc == 0)
        .unwrap_or(false);
    (l, ok)
}

fn can_bind(sam: &str, password: &str) -> bool {
    block_on(async {
        let (mut l, ok) = ldaps_as(sam, password).await;
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
    // The first sync with --json: the report on stdout, the progress as JSON lines on stderr.
    let first = env.run(&["--json"]);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&first.stdout),
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(first.status.success(), "{out}");
    let report: serde_json::Value = serde_json::from_slice(&first.stdout)
        .unwrap_or_else(|e| panic!("run --once --json: {e}: {out}"));
    assert_eq!(report["role"], "primary", "{report}");
    let operations = report["operations"].as_u64().unwrap_or(0);
    assert!(operations >= 6, "{report}");
    let progress = progress_lines(&String::from_utf8_lossy(&first.stderr));
    let applying = progress
        .iter()
        .find(|p| p["phase"] == "applying")
        .unwrap_or_else(|| panic!("no progress while writing to AD: {out}"));
    assert_eq!(applying["task"], "sync");
    assert!(applying["total"].as_u64().unwrap_or(0) > 0, "{applying}");
    let last = progress.last().unwrap_or_else(|| panic!("{out}"));
    assert_eq!(last["phase"], "done", "{out}");
    // The final reading counts every operation the report does (none was a no-op here).
    assert_eq!(
        (last["done"].as_u64(), last["total"].as_u64()),
        (Some(operations), Some(operations)),
        "{out}"
    );

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
    // `status` shows the run's failed changes with their reasons, amber, and the cloud's view.
    let (code, status) = env.status();
    assert_eq!(code, Some(1), "{status:#}");
    assert_eq!(status["light"], "amber", "{status:#}");
    assert_eq!(status["failed"], 2, "{status:#}");
    let reasons: Vec<&str> = status["failures"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f["reason"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("carol") && r.contains("not managed by ad-sync")),
        "{status:#}"
    );
    assert!(
        status["headline"]
            .as_str()
            .unwrap_or("")
            .contains("failed 2 changes"),
        "{status:#}"
    );
    assert_eq!(status["role"], "primary", "{status:#}");
    assert_eq!(status["cloud_view"]["role"], "primary", "{status:#}");
    assert!(
        status["managed_users"].as_u64().unwrap_or(0) >= 10,
        "{status:#}"
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

    // Deletion threshold: 10 managed, 10% is 1; removing 3 holds the three deletions (nothing
    // done to those accounts) while the rest of the run goes on: a new user still arrives.
    // In the same run a second collision fails (an unmanaged `carla`), so the run ends with
    // both a held deletion and a failed change, as `status` and review mode then show.
    block_on(async {
        let mut l = admin_on(dc).await;
        testbed::add_user(&mut l, &env.ou, "carla", "512").await
    })
    .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..3 {
        env.cloud(&["user", "remove", &format!("d{i}")]);
    }
    env.add_user("safety-late");
    env.add_user("carla");
    let out = env.run(&[]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(4),
        "a change failed, and deletions are held: {err}"
    );
    assert!(
        err.contains("deletion budget") && err.contains("3 disconnections are held"),
        "{err}"
    );
    assert!(user_in(&env, "d0").is_some(), "nothing was deleted");
    assert!(
        user_in(&env, "safety-late").is_some(),
        "the rest of the run was applied: {err}"
    );

    // `status` shows the three held, amber, with what to do.
    let (code, status) = env.status();
    assert_eq!(code, Some(1), "{status:#}");
    let mut held: Vec<&str> = status["held"]
        .as_array()
        .map(|a| a.iter().filter_map(|h| h["name"].as_str()).collect())
        .unwrap_or_default();
    held.sort();
    assert_eq!(held, vec!["d0", "d1", "d2"], "{status:#}");
    assert_eq!(status["failed"], 1, "{status:#}");
    assert!(
        status["failures"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("carla") && r.contains("not managed by ad-sync")),
        "{status:#}"
    );
    assert!(
        status["fix"].as_str().unwrap_or("").contains("pending"),
        "{status:#}"
    );
    // The wizard's review mode opens with the same: the held deletions and the failed change.
    review_shows(
        &env,
        &[
            "would delete; held since",
            "CN=d0,",
            "not managed by ad-sync",
            "carla",
        ],
    );
    // `pending` lists them with what each would do and why.
    let listed = env.pending(&["--json"]);
    assert_eq!(listed.0, Some(3), "{}", listed.1);
    let json: serde_json::Value =
        serde_json::from_str(&listed.1).unwrap_or_else(|e| panic!("{e}: {}", listed.1));
    let held = json["held"].as_array().cloned().unwrap_or_default();
    let mut names: Vec<&str> = held.iter().filter_map(|h| h["name"].as_str()).collect();
    names.sort();
    assert_eq!(names, vec!["d0", "d1", "d2"], "{json:#}");
    assert!(
        held.iter().all(|h| h["action"] == "delete"
            && h["why"]
                .as_str()
                .unwrap_or("")
                .contains("removed from the cloud")
            && h["dn"].as_str().unwrap_or("").starts_with("CN=d")),
        "{json:#}"
    );
    let id_of = |name: &str| {
        held.iter()
            .find(|h| h["name"] == name)
            .and_then(|h| h["id"].as_str())
            .unwrap_or_else(|| panic!("{name} not held"))
            .to_string()
    };
    // A run without approval changes nothing held.
    let out = env.run(&[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(user_in(&env, "d0").is_some());
    // An id that is not held is refused by name, and nothing is approved.
    let (code, text) = env.pending(&["--approve", "u-nobody"]);
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("not held: u-nobody"), "{text}");
    assert!(user_in(&env, "d0").is_some());
    // The administrator approves d0 only: d0 is deleted once, d1 and d2 stay held.
    let (code, text) = env.pending(&["--approve", &id_of("d0")]);
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("still held: 2"), "{text}");
    assert!(user_in(&env, "d0").is_none(), "approved: deleted");
    assert!(user_in(&env, "d1").is_some() && user_in(&env, "d2").is_some());
    let (_, text) = env.pending(&[]);
    assert!(
        text.contains("2 disconnections held") && !text.contains(&id_of("d0")),
        "{text}"
    );
    // Then the rest, all at once: the list reviewed is named by its digest.
    let listed = env.pending(&["--json"]);
    let json: serde_json::Value =
        serde_json::from_str(&listed.1).unwrap_or_else(|e| panic!("{e}: {}", listed.1));
    let digest = json["digest"].as_str().unwrap_or_default().to_string();
    let (code, text) = env.pending(&["--approve-all", "--expect", &digest]);
    assert_eq!(code, Some(0), "{text}");
    assert!(user_in(&env, "d1").is_none() && user_in(&env, "d2").is_none());
    assert!(user_in(&env, "d3").is_some());
    assert!(
        env.pending(&[]).1.contains("nothing is held"),
        "nothing left held"
    );

    // An orphan: an account in the agent's container carrying its marker for a cloud object it
    // has never heard of (its state lost while the cloud removed it). The comparison with AD
    // finds it and applies the disconnection policy (remove), within the threshold; an
    // unmarked account beside it is not the agent's and is left alone. The first scan reads
    // the whole container; the later one only what changed since (uSNChanged).
    seed_user(&env.ou, "bystander", None, None, "512");
    for sam in ["ghost", "ghost2"] {
        let dn = seed_user(&env.ou, sam, Some("Gho"), Some("St"), "512");
        let marker = format!("ad-sync:u-{sam}-never-known");
        ldap_modify(
            &dn,
            vec![ldap3::Mod::Replace(
                "adminDescription",
                HashSet::from([marker.as_str()]),
            )],
        );
        // The day's budget went to the approved deletions: the administrator allows this
        // one for the run.
        let out = env.run(&["--resync", "--allow-deletions", "1"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("orphans: 1"), "{sam}: {text}");
        assert!(
            user_in(&env, sam).is_none(),
            "{sam}: the orphan got the policy"
        );
        assert!(user_in(&env, "bystander").is_some());
    }
}

/// The deletion budget, live: under the default `disable` policy a removal within the day's
/// budget is applied, the next slice is held because the window spent it, mass suspensions are
/// held too, and `--approve-all` needs the reviewed list.
#[test]
fn slices_and_mass_suspensions_are_held_by_the_budget() {
    let _dc = DC.read();
    let env = Env::new("budget", "");
    for i in 0..10 {
        env.add_user(&format!("b{i}"));
    }
    // With a password each (an account without one is created disabled).
    for i in 0..6 {
        env.set_password(&format!("b{i}"));
    }
    env.sync();
    for i in 0..6 {
        let e = user_in(&env, &format!("b{i}")).unwrap_or_else(|| panic!("b{i}"));
        assert!(uac(&e) & 2 == 0, "b{i} is enabled");
    }
    // 10 managed, 10 % is one a day: the first removal is done (disabled, released).
    env.cloud(&["user", "remove", "b0"]);
    env.sync();
    let b0 = user_in(&env, "b0").unwrap_or_else(|| panic!("b0"));
    assert!(uac(&b0) & 2 != 0, "b0 disabled");
    // The next slice, in a later run of the same day, is held: the window spent the budget.
    env.cloud(&["user", "remove", "b1"]);
    let out = env.run(&[]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("1 were disconnected in the last 24 hours"),
        "{err}"
    );
    assert!(uac(&user_in(&env, "b1").unwrap_or_else(|| panic!("b1"))) & 2 == 0);
    // Suspending many at once is held as well.
    for i in 2..6 {
        env.cloud(&["user", "suspend", &format!("b{i}")]);
    }
    let out = env.run(&[]);
    assert_eq!(out.status.code(), Some(3));
    for i in 2..6 {
        let e = user_in(&env, &format!("b{i}")).unwrap_or_else(|| panic!("b{i}"));
        assert!(uac(&e) & 2 == 0, "b{i} was disabled");
    }
    let listed = env.pending(&["--json"]);
    let json: serde_json::Value =
        serde_json::from_str(&listed.1).unwrap_or_else(|e| panic!("{e}: {}", listed.1));
    assert_eq!(json["count"], 5, "{json:#}");
    let suspensions = json["held"]
        .as_array()
        .map(|a| a.iter().filter(|h| h["action"] == "suspend").count())
        .unwrap_or(0);
    assert_eq!(suspensions, 4, "{json:#}");
    // --approve-all without the reviewed count, or with another, approves nothing.
    let (code, text) = env.pending(&["--approve-all"]);
    assert_ne!(code, Some(0), "{text}");
    let (code, text) = env.pending(&["--approve-all", "--expect", "4"]);
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("changed since it was reviewed"), "{text}");
    assert!(uac(&user_in(&env, "b2").unwrap_or_else(|| panic!("b2"))) & 2 == 0);
    // With it, all five are applied.
    let (code, text) = env.pending(&["--approve-all", "--expect", "5"]);
    assert_eq!(code, Some(0), "{text}");
    for i in 1..6 {
        let e = user_in(&env, &format!("b{i}")).unwrap_or_else(|| panic!("b{i}"));
        assert!(uac(&e) & 2 != 0, "b{i} is disabled once approved");
    }
}

/// `--allow-deletions N` on a full comparison allows N for the whole comparison, not N for each
/// of its passes (the tests' agent compares two users a pass): four suspended accounts enabled
/// again by hand in AD, compared with `--allow-deletions 2`, get two disabled and two held.
#[test]
fn an_allowance_counts_over_the_whole_comparison() {
    let _dc = DC.read();
    let env = Env::new("allow", "");
    let names = ["al0", "al1", "al2", "al3"];
    for n in names {
        env.add_user(n);
        env.set_password(n);
    }
    env.sync();
    for n in names {
        env.cloud(&["user", "suspend", n]);
    }
    let out = env.run(&["--allow-deletions", "4"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let disabled = |n: &str| uac(&user_in(&env, n).unwrap_or_else(|| panic!("{n}"))) & 2 != 0;
    assert!(names.iter().all(|n| disabled(n)), "the four are suspended");
    for n in names {
        let dn = user_in(&env, n)
            .map(|e| e.dn)
            .unwrap_or_else(|| panic!("{n}"));
        ldap_modify(
            &dn,
            vec![ldap3::Mod::Replace(
                "userAccountControl",
                HashSet::from(["512"]),
            )],
        );
    }
    let out = env.run(&["--resync", "--allow-deletions", "2"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(3), "two are held: {text}");
    assert_eq!(
        names.iter().filter(|n| disabled(n)).count(),
        2,
        "two disabled again, not four: {text}"
    );
    let listed = env.pending(&["--json"]);
    let json: serde_json::Value =
        serde_json::from_str(&listed.1).unwrap_or_else(|e| panic!("{e}: {}", listed.1));
    assert_eq!(json["count"], 2, "{json:#}");
}

#[test]
fn a_sync_group_that_became_privileged_is_never_written() {
    let _dc = DC.read();
    let env = Env::new("privsync", "");
    env.cloud(&["group", "add", "Priv Eng"]);
    env.sync();
    let tag_sam = "sync-privsync";
    assert_eq!(members_of(&env.ou, tag_sam), vec!["Priv Eng"]);

    // Someone nests the sync group in the built-in Administrators after the install (check
    // would refuse it now): from then on every cloud group would be an administrator.
    let admins = "CN=Administrators,CN=Builtin,DC=example,DC=com";
    ldap_modify(
        admins,
        vec![ldap3::Mod::Add(
            "member",
            HashSet::from([env.sync_group.as_str()]),
        )],
    );
    env.cloud(&["group", "add", "Priv Ops"]);
    let out = env.sync_allowing_failures();
    let results = env.results();
    let refused: Vec<_> = results
        .iter()
        .filter(|(_, s, m)| s == "failed" && m.contains("is never written"))
        .collect();
    assert_eq!(refused.len(), 1, "{results:?}\n{out}");
    assert!(
        refused[0].2.contains("CN=Administrators,CN=Builtin")
            && refused[0].2.contains("ordinary security group"),
        "{refused:?}"
    );
    assert_eq!(
        members_of(&env.ou, tag_sam),
        vec!["Priv Eng"],
        "the sync group was written"
    );
    assert!(
        search(&env.ou, "(sAMAccountName=Priv Ops)").is_empty(),
        "the group was created"
    );

    // Out of Administrators again: the next comparison creates and nests it.
    ldap_modify(
        admins,
        vec![ldap3::Mod::Delete(
            "member",
            HashSet::from([env.sync_group.as_str()]),
        )],
    );
    let out = env.run(&["--resync"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(members_of(&env.ou, tag_sam), vec!["Priv Eng", "Priv Ops"]);
}

#[test]
fn a_cloud_that_redirects_fails_check_and_the_agent_and_gets_nothing() {
    let _dc = DC.read();
    let env = Env::new("redirect", "");
    let r = support::forged::Redirector::start(&env.dir.join("redirector"));
    // check: the key goes nowhere (it would be in the body a 307 makes a client re-send).
    let mut spec = Spec::good();
    spec.cloud_url = Some(r.url.clone());
    spec.cloud_ca = Some(r.ca.clone());
    let key = env.cloud.issue_key(DOMAIN, None);
    spec.connect_key = Some(key.clone());
    let answers = spec.write();
    let out = support::setup_cli(&["check", "--answers", &answers.to_string_lossy(), "--json"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let tls = v["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == "cloud.tls"))
        .unwrap_or_else(|| panic!("no cloud.tls: {text}"));
    assert_eq!(tls["status"], "fail", "{tls}");
    assert!(
        tls["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("redirect"),
        "{tls}"
    );
    // The agent: its credential goes nowhere either.
    let config = std::fs::read_to_string(&env.config).unwrap_or_else(|e| panic!("{e}"));
    let url_line = config
        .lines()
        .find(|l| l.starts_with("url = "))
        .unwrap_or_else(|| panic!("no url in {config}"))
        .to_string();
    let redirected = config
        .replace(&url_line, &format!("url = \"{}\"", r.url))
        .replace(
            "ca_file = \"cloud-ca.pem\"",
            &format!("ca_file = '{}'", r.ca.display()),
        );
    std::fs::write(&env.config, redirected).unwrap_or_else(|e| panic!("{e}"));
    let out = env.run(&[]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("redirect") && err.contains("never follows"),
        "{err}"
    );
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert!(
        r.plain_received().is_empty(),
        "the plain listener received {:?}",
        String::from_utf8_lossy(&r.plain_received())
    );
    assert!(!err.contains(&key[5..]));
}

/// `run --once` with a config and a state folder of the test's choosing.
fn agent_with_state(config: &Path, state_dir: &Path) -> Output {
    run_once(config, state_dir, Path::new("-"), &[])
}

fn set_aside_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("state.db.set-aside-")
                })
                .filter(|e| !e.file_name().to_string_lossy().ends_with("-wal"))
                .filter(|e| !e.file_name().to_string_lossy().ends_with("-shm"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_state_of_another_enrollment_or_past_a_restored_cloud_is_set_aside() {
    let _dc = DC.read();
    let env = Env::new("rebind", "");
    env.add_user("rb1");
    env.add_user("rb2");
    env.sync();
    let old_state = env.dir.join("a/var/lib/ad-sync");
    assert!(old_state.join("state.db").is_file());

    // A fresh cloud (a new tenant, or one rebuilt) and a new install on the same machine; the
    // old install's state is still in the state folder. Before, the new agent took it for its
    // own: cursor 3, "changes: 0", and the new cloud's users never reached AD.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut cloud2 = CloudServer::start_on(
        "rebind2",
        &format!("127.0.0.1:{port}"),
        &["--heartbeat-interval", "1s", "--primary-timeout", "3s"],
    );
    cloud2.admin_ok(&["domain", "add", DOMAIN]);
    for u in ["rb3", "rb4", "rb5"] {
        cloud2.admin_ok(&[
            "user",
            "add",
            u,
            "--given",
            "G",
            "--surname",
            &format!("S{u}"),
        ]);
    }
    let config2 = install(&cloud2, &env.dir.join("b"), &env.ou, &env.sync_group, "");
    let out = agent_with_state(&config2, &old_state);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("was not used") && err.contains("belongs to the enrollment"),
        "{err}"
    );
    assert_eq!(set_aside_files(&old_state), 1, "set aside, not deleted");
    let users = users_in_ou(&env);
    for u in ["rb3", "rb4", "rb5"] {
        assert!(
            users.contains(&u.to_string()),
            "{u} never reached AD: {users:?}"
        );
    }
    // Bound now: the next run takes it as its own.
    let out = agent_with_state(&config2, &old_state);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("was not used"));
    assert_eq!(set_aside_files(&old_state), 1);

    // The cloud restored from a backup: its feed ends before this state's cursor.
    cloud2.stop();
    let backup = cloud2.dir.join("backup.db");
    std::fs::copy(&cloud2.db, &backup).unwrap_or_else(|e| panic!("{e}"));
    cloud2.restart();
    cloud2.admin_ok(&["user", "add", "rb6", "--given", "G", "--surname", "S6"]);
    cloud2.admin_ok(&["user", "add", "rb7", "--given", "G", "--surname", "S7"]);
    let out = agent_with_state(&config2, &old_state);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cloud2.stop();
    for side in ["cloud.db-wal", "cloud.db-shm"] {
        let _ = std::fs::remove_file(cloud2.dir.join(side));
    }
    std::fs::copy(&backup, &cloud2.db).unwrap_or_else(|e| panic!("{e}"));
    cloud2.restart();
    let out = agent_with_state(&config2, &old_state);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("past the end of the cloud's change feed"),
        "{text}"
    );
    assert!(text.contains("failed: 0"), "{text}");
    assert_eq!(set_aside_files(&old_state), 2);
    // Replayed from the start: the restored cloud's users are recognised by their marker (no
    // collision, no duplicate).
    let users = users_in_ou(&env);
    for u in ["rb3", "rb4", "rb5"] {
        assert_eq!(users.iter().filter(|x| *x == u).count(), 1, "{users:?}");
    }
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

/// A full comparison goes through the state a page at a time (the tests' agent compares two
/// objects a pass, so five users are three passes and three groups two): drift on every user
/// and every group is repaired, and a user deleted by hand in AD is created again by a users'
/// pass and put back in its group by the groups' pass after it.
#[test]
fn a_full_comparison_repairs_drift_on_every_page() {
    let _dc = DC.read();
    let env = Env::new("pages", "");
    let users = ["pga", "pgb", "pgc", "pgd", "pge"];
    let groups = [("Pages 1", "pga"), ("Pages 2", "pgc"), ("Pages 3", "pge")];
    for u in users {
        env.add_user(u);
    }
    for (g, u) in groups {
        env.cloud(&["group", "add", g]);
        env.cloud(&["group", "add-member", g, u]);
    }
    env.sync();
    for (g, u) in groups {
        assert_eq!(members_of(&env.ou, g), vec![u.to_string()], "{g}");
    }
    // Drift by hand: every user's givenName, every group's member, and one user deleted.
    let dn_of = |name: &str| {
        search(&env.ou, &format!("(sAMAccountName={name})"))
            .into_iter()
            .next()
            .map(|e| e.dn)
            .unwrap_or_else(|| panic!("{name} is in AD"))
    };
    for u in users {
        ldap_modify(
            &dn_of(u),
            vec![ldap3::Mod::Replace("givenName", HashSet::from(["Drifted"]))],
        );
    }
    for (g, u) in groups {
        let member = dn_of(u);
        ldap_modify(
            &dn_of(g),
            vec![ldap3::Mod::Delete(
                "member",
                HashSet::from([member.as_str()]),
            )],
        );
    }
    let gone = dn_of("pgc");
    block_on(async {
        let mut l = admin_on(&bed().dc1).await;
        l.delete(&gone)
            .await
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = l.unbind().await;
    });
    let out = env.run(&["--resync"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    for u in users {
        let e = user_in(&env, u).unwrap_or_else(|| panic!("{u} is in AD again: {text}"));
        assert_eq!(
            attr(&e, "givenName").as_deref(),
            Some("Given"),
            "{u}: {text}"
        );
    }
    for (g, u) in groups {
        assert_eq!(members_of(&env.ou, g), vec![u.to_string()], "{g}: {text}");
    }
    // And nothing is left to do: the next comparison changes nothing.
    let again = env.run(&["--resync"]);
    let again = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(again.contains("operations: 0"), "{again}");
}

#[test]
fn a_killed_agent_resumes_without_duplicates_and_a_standby_takes_over() {
    let _dc = DC.read();
    let env = Env::new("failover", "");
    for i in 0..60 {
        env.add_user(&format!("k{i:02}"));
    }
    // Killed mid-run: SIGKILL as soon as the first users appear.
    let base = env.base();
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

/// `run --once` that stops itself at `point` (`AD_SYNC_AGENT_FAULT`); the child and its pid.
fn agent_stopped_at(env: &Env, point: &str) -> (std::process::Child, i32) {
    let base = env.base();
    support::spawn_stopped(
        Command::new(agent_bin())
            .args(["run", "--once", "--config"])
            .arg(&env.config)
            .arg("--state-dir")
            .arg(base.join("var/lib/ad-sync"))
            .args(["--log-dir", "-"])
            .env("AD_SYNC_AGENT_FAULT", format!("stop-before:{point}"))
            .env_remove("CREDENTIALS_DIRECTORY"),
    )
}

/// Lets an agent stopped at its fault point go on, and waits for it: its output, and all it
/// printed.
fn resume(child: std::process::Child, pid: i32) -> (Output, String) {
    signal(pid, libc::SIGCONT);
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) on a child this test started.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// objectGUIDs of the users in the env's OU, by name.
fn user_guids(env: &Env) -> BTreeMap<String, Vec<u8>> {
    search(&env.ou, "(&(objectClass=user)(!(objectClass=computer)))")
        .iter()
        .filter_map(|e| Some((attr(e, "sAMAccountName")?, guid_of(e))))
        .collect()
}

#[test]
fn killed_between_its_ad_writes_and_its_commit_the_agent_resumes_without_duplicates() {
    let _dc = DC.read();
    let env = Env::new("precommit", "");
    for i in 0..20 {
        env.add_user(&format!("p{i:02}"));
    }
    env.cloud(&["group", "add", "Pre Eng"]);
    // Stopped after every AD write of the run, before the state commits any of it.
    let (child, pid) = agent_stopped_at(&env, "commit");
    let written = user_guids(&env);
    assert_eq!(written.len(), 20, "AD has the run's writes: {written:?}");
    assert!(env.results().is_empty(), "nothing acknowledged");
    signal(pid, libc::SIGKILL);
    let _ = child.wait_with_output();
    // Restarted: the same work again from the same cursor finds every object by its marker and
    // does nothing twice; every change is answered once.
    let text = env.sync();
    assert!(text.contains("created: 0"), "nothing created twice: {text}");
    assert_eq!(
        user_guids(&env),
        written,
        "the same 20 objects, no duplicate"
    );
    assert_eq!(members_of(&env.ou, "sync-precommit"), vec!["Pre Eng"]);
    let results = env.results();
    assert_eq!(results.len(), 21, "{results:?}");
    assert!(
        results.iter().all(|(_, s, _)| s == "applied"),
        "{results:?}"
    );
    // And once more: nothing left to do.
    let text = env.sync();
    assert!(text.contains("changes: 0"), "{text}");
}

#[test]
fn the_cloud_stopped_mid_run_gets_every_result_once_when_it_returns() {
    let _dc = DC.read();
    let mut env = Env::restartable("cloudown", "");
    for i in 0..10 {
        env.add_user(&format!("c{i:02}"));
    }
    // The agent has read the changes and written them to AD when the cloud goes away.
    let (child, pid) = agent_stopped_at(&env, "commit");
    env.cloud.stop();
    let (out, text) = resume(child, pid);
    // AD confirmed the writes and the state committed them; the acknowledgements could not be
    // sent: the run says the cloud is away (exit 1) and keeps them in its outbox.
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("acknowledging results to the cloud"),
        "{text}"
    );
    let written = user_guids(&env);
    assert_eq!(written.len(), 10, "{written:?}");
    let base = env.base().to_path_buf();
    let outbox = |base: &Path| {
        ad_sync_agent::state::State::open(&base.join("var/lib/ad-sync"))
            .and_then(|s| s.outbox())
            .unwrap_or_else(|e| panic!("{e}"))
            .len()
    };
    assert_eq!(outbox(&base), 10, "the results wait in the outbox");
    // While the cloud is away nothing was acknowledged (its database says so).
    assert!(env.results().is_empty());
    // Another run while it is still away: no AD write repeated, the outbox kept.
    let out = env.run(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(user_guids(&env), written);
    // The cloud returns: the outbox is drained, each change answered once, nothing applied twice.
    env.cloud.restart();
    let text = env.sync();
    assert!(
        text.contains("operations: 0"),
        "nothing applied twice: {text}"
    );
    assert_eq!(outbox(&base), 0, "the outbox drained");
    let results = env.results();
    assert_eq!(results.len(), 10, "{results:?}");
    assert!(
        results.iter().all(|(_, s, _)| s == "applied"),
        "{results:?}"
    );
    assert_eq!(user_guids(&env), written);

    // Stopped again after the commit, before the acknowledgement: the cloud away and back.
    env.add_user("c10");
    let (child, pid) = agent_stopped_at(&env, "ack");
    env.cloud.stop();
    signal(pid, libc::SIGCONT);
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1));
    env.cloud.restart();
    env.sync();
    assert_eq!(env.results().len(), 11);
    assert_eq!(user_guids(&env).len(), 11);
}

/// The cloud as three nodes on one database behind HAProxy: the agent enrolls, reads its
/// changes and writes them to AD through the first node, which is then killed (SIGKILL, as a
/// machine lost); the agent finishes the run through the others. Every change is answered
/// once, and the next run applies nothing again.
#[test]
fn a_cloud_node_killed_mid_sync_behind_haproxy_loses_and_doubles_nothing() {
    node_killed_behind_haproxy("ha", CloudServer::start);
}

/// The same with the three nodes on one PostgreSQL database, where they really write at once.
#[test]
fn on_postgres_a_cloud_node_killed_mid_sync_behind_haproxy_loses_and_doubles_nothing() {
    node_killed_behind_haproxy("hapg", CloudServer::start_on_postgres);
}

fn node_killed_behind_haproxy(tag: &str, start: fn(&str, &[&str]) -> CloudServer) {
    let _dc = DC.read();
    let flags = ["--heartbeat-interval", "1s", "--primary-timeout", "3s"];
    let mut first = start(tag, &flags);
    let others = [first.node(&flags), first.node(&flags)];
    let lb =
        support::haproxy::Haproxy::start(tag, &[first.port(), others[0].port(), others[1].port()]);
    first.url = lb.url();
    let mut env = Env::with_cloud(tag, "", first);
    for i in 0..10 {
        env.add_user(&format!("{tag}{i:02}"));
    }
    let (child, pid) = agent_stopped_at(&env, "commit");
    env.cloud.kill();
    let (out, text) = resume(child, pid);
    assert!(
        out.status.success(),
        "the run did not finish: {text}\n{}",
        lb.log()
    );
    let written = user_guids(&env);
    assert_eq!(written.len(), 10, "{written:?}");
    let results = env.results();
    assert_eq!(results.len(), 10, "{results:?}");
    assert!(
        results.iter().all(|(_, s, _)| s == "applied"),
        "{results:?}"
    );
    // The next run, and one more change, go through the nodes left.
    let text = env.sync();
    assert!(text.contains("operations: 0"), "applied twice: {text}");
    env.add_user(&format!("{tag}10"));
    env.sync();
    assert_eq!(env.results().len(), 11);
    assert_eq!(user_guids(&env).len(), 11);
}

#[test]
fn the_dc_going_away_mid_run_loses_and_doubles_nothing() {
    let _dc = DC.write().unwrap_or_else(|p| p.into_inner());
    let env = Env::new("dcdown", "");
    for i in 0..150 {
        env.add_user(&format!("o{i:03}"));
    }
    let base = env.base().to_path_buf();
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
fn the_agent_never_binds_in_clear_text_and_falls_back_to_verified_starttls_only() {
    let _dc = DC.read();
    let env = Env::new("plain", "");
    let original = std::fs::read_to_string(&env.config).unwrap_or_else(|e| panic!("{e}"));
    // dc2 on a port where no LDAPS listens (a DC without LDAPS), the fallback allowed: its
    // 389 answers, but StartTLS fails on its expired certificate, and plain LDAP is never
    // bound to: the run stops, and the password is nowhere.
    let on = |host: &str| {
        original
            .replace(
                "dc_host = \"dc1.example.com\"",
                &format!("dc_host = \"{host}\""),
            )
            .replace(
                "allow_insecure_fallback = false",
                "allow_insecure_fallback = true\nport = 1636",
            )
    };
    let text = on("dc2.example.com");
    assert!(
        text.contains("dc2.example.com") && text.contains("allow_insecure_fallback = true"),
        "{text}"
    );
    std::fs::write(&env.config, &text).unwrap_or_else(|e| panic!("{e}"));
    env.add_user("tlspat");
    env.set_password("tlspat");
    let out = env.run(&[]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "retried later: {err}");
    assert!(err.contains("never logs on over plain LDAP"), "{err}");
    assert!(!err.contains(USER_PASSWORD) && !err.contains(testbed::SVC_PASSWORD));
    assert!(user_in(&env, "tlspat").is_none());

    // dc1 the same way: its StartTLS on 389 is verified and used, and the password is set.
    std::fs::write(&env.config, on("dc1.example.com")).unwrap_or_else(|e| panic!("{e}"));
    let text = env.sync();
    assert!(!text.contains(USER_PASSWORD), "{text}");
    assert!(can_bind("tlspat", USER_PASSWORD));
}

fn ldap_modify(dn: &str, mods: Vec<ldap3::Mod<&str>>) {
    let dc = &bed().dc1;
    block_on(async {
        let mut l = admin_on(dc).await;
        l.modify(dn, mods)
            .await
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("modify {dn}: {e}"));
    });
}

/// An account an administrator made before ad-sync: a password, names as given.
fn seed_user(ou: &str, sam: &str, given: Option<&str>, sn: Option<&str>, uac: &str) -> String {
    let dc = &bed().dc1;
    let dn = block_on(async {
        let mut l = admin_on(dc).await;
        testbed::add_user(&mut l, ou, sam, uac).await
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let replace = |a: &str, v: String| ldap3::Mod::Replace(a.to_string(), HashSet::from([v]));
    let mut mods = vec![replace("mail", format!("{sam}@old.example.com"))];
    if let Some(g) = given {
        mods.push(replace("givenName", g.to_string()));
    }
    if let Some(s) = sn {
        mods.push(replace("sn", s.to_string()));
    }
    block_on(async {
        let mut l = admin_on(dc).await;
        l.modify(&dn, mods)
            .await
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("modify {dn}: {e}"));
    });
    dn
}

/// A group an administrator made: security (`-2147483646`) or distribution (`2`).
fn seed_group(dn: &str, sam: &str, group_type: &str, members: &[&str]) {
    let mut attrs = vec![
        ("objectClass", vec!["top", "group"]),
        ("sAMAccountName", vec![sam]),
        ("groupType", vec![group_type]),
    ];
    if !members.is_empty() {
        attrs.push(("member", members.to_vec()));
    }
    ldap_add(dn, attrs);
}

fn guid_of(e: &ldap3::SearchEntry) -> Vec<u8> {
    e.bin_attrs
        .get("objectGUID")
        .and_then(|v| v.first().cloned())
        .unwrap_or_else(|| panic!("no objectGUID"))
}

/// The members of a group, by the first RDN value.
fn members_of(base: &str, sam: &str) -> Vec<String> {
    members_of_on(&bed().dc1, base, sam)
}

/// `ad-sync-setup check --json` with a fresh key for the env's domain, the env's containers
/// and these [sync] lines: the sync.preview check.
fn preview(env: &Env, sync: &str) -> serde_json::Value {
    let key = env.cloud.issue_key(DOMAIN, None);
    let mut spec = Spec::good();
    spec.root_dn = env.ou.clone();
    spec.sync_group_dn = Some(env.sync_group.clone());
    spec.cloud_url = Some(env.cloud.url.clone());
    spec.cloud_ca = Some(env.cloud.ca.clone());
    spec.connect_key = Some(key.clone());
    let answers = spec.write();
    let text = std::fs::read_to_string(&answers).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&answers, format!("{text}\n[sync]\n{sync}\n")).unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(setup_bin())
        .args(["check", "--json", "--answers"])
        .arg(&answers)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!text.contains(&key[5..30]), "connect key in check output");
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    v["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == "sync.preview").cloned())
        .unwrap_or_else(|| panic!("no sync.preview in {text}"))
}

/// `created: N, adopted: M` from `run --once`'s summary line.
fn created_adopted(text: &str) -> (usize, usize) {
    let num = |k: &str| {
        text.split(&format!("{k}: "))
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `{k}:` in {text}"))
    };
    (num("created"), num("adopted"))
}

#[test]
fn existing_accounts_and_groups_are_adopted_in_place_when_allowed_and_safe() {
    let _dc = DC.read();
    let sync = "adopt_existing_users = true\nadopt_existing_groups = true";
    let env = Env::new("adopt", sync);
    // What the domain held before ad-sync: ann and ben (enabled, with passwords), zed (no cloud
    // user), pat (adminCount=1), nel (in Domain Admins through a nested group), a security
    // group with ann and zed, and a distribution group.
    let ann = seed_user(&env.ou, "ann", Some("Ann"), Some("Old"), "512");
    seed_user(&env.ou, "ben", Some("Ben"), Some("Old"), "512");
    let zed = seed_user(&env.ou, "zed", Some("Zed"), Some("Keep"), "512");
    let pat = seed_user(&env.ou, "pat", Some("Pat"), Some("P"), "512");
    ldap_modify(
        &pat,
        vec![ldap3::Mod::Replace("adminCount", HashSet::from(["1"]))],
    );
    let nel = seed_user(&env.ou, "nel", Some("Nel"), Some("N"), "512");
    let helpers = format!("CN=Adopt Helpers,{}", env.ou);
    seed_group(&helpers, "adopt-helpers", "-2147483646", &[&nel]);
    ldap_modify(
        &format!("CN=Domain Admins,CN=Users,{DOMAIN}"),
        vec![ldap3::Mod::Add("member", HashSet::from([helpers.as_str()]))],
    );
    let team = format!("CN=Adopt Team,{}", env.ou);
    seed_group(&team, "Adopt Team", "-2147483646", &[&ann, &zed]);
    seed_group(
        &format!("CN=Adopt News,{}", env.ou),
        "Adopt News",
        "2",
        &[&ann],
    );
    let ann_guid = guid_of(&user_in(&env, "ann").unwrap_or_else(|| panic!("ann")));

    for u in ["ann", "ben", "pat", "nel", "newbie"] {
        env.add_user(u);
    }
    env.cloud(&["group", "add", "Adopt Team"]);
    env.cloud(&["group", "add", "Adopt News"]);
    env.cloud(&["group", "add-member", "Adopt Team", "ann"]);
    env.cloud(&["group", "add-member", "Adopt Team", "newbie"]);

    // The preview, before anything is written.
    let p = preview(&env, sync);
    let summary = p["summary"].as_str().unwrap_or_default().to_string();
    assert_eq!(p["status"], "warn", "{p}");
    assert!(
        summary
            .contains("users: 1 created, 2 adopted, 0 already managed, 0 collisions, 2 protected")
            && summary.contains(
                "groups: 0 created, 1 adopted, 0 already managed, 1 collisions, 0 protected"
            ),
        "{summary}"
    );
    let detail = p["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("`Adopt News`: it is a distribution group"),
        "{detail}"
    );
    assert!(
        detail.contains("`nel`: it is privileged: it is a member of adopt-helpers (it is a member of Domain Admins"),
        "{detail}"
    );
    assert!(
        detail.contains("`pat`: it is protected (adminCount=1"),
        "{detail}"
    );
    // The same with adoption off: the two accounts and the group are collisions.
    let off = preview(&env, "");
    assert!(
        off["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("users: 1 created, 0 adopted, 0 already managed, 2 collisions, 2 protected"),
        "{off}"
    );

    // Dry run: says what it would adopt, and writes nothing.
    let out = env.run(&["--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains(&format!(
            "would adopt the existing account {ann} for cloud user ann (the cloud now sets"
        )) && text.contains("givenName"),
        "{text}"
    );
    assert_eq!(created_adopted(&text), (1, 3), "{text}");
    assert_eq!(
        attr(
            &user_in(&env, "ann").unwrap_or_else(|| panic!()),
            "adminDescription"
        ),
        None
    );

    // The first run does what the preview said.
    let out = env.run(&[]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.status.code(),
        Some(4),
        "pat, nel and the distribution group fail: {text}"
    );
    assert_eq!(created_adopted(&text), (1, 3), "{text}");
    let a = user_in(&env, "ann").unwrap_or_else(|| panic!("ann"));
    assert_eq!(guid_of(&a), ann_guid, "the same object, adopted in place");
    assert_eq!(
        attr(&a, "sn").as_deref(),
        Some("Surann"),
        "names now come from the cloud"
    );
    assert_eq!(attr(&a, "mail").as_deref(), Some("ann@mail.example.com"));
    assert!(attr(&a, "adminDescription").is_some_and(|m| m.starts_with("ad-sync:u")));
    assert_eq!(uac(&a) & 2, 0, "still enabled: AD has her password");
    // Her old password still works: it is not touched until the cloud sets one.
    assert!(can_bind("ann", testbed::SVC_PASSWORD));
    let results = env.results();
    assert!(
        results
            .iter()
            .any(|(_, s, m)| s == "applied" && *m == format!("adopted {ann}")),
        "{results:?}"
    );
    for (who, why) in [
        ("pat", "adminCount=1"),
        ("nel", "it is a member of adopt-helpers"),
        ("Adopt News", "distribution group"),
    ] {
        assert!(
            results
                .iter()
                .any(|(_, s, m)| s == "failed" && m.contains(who) && m.contains(why)),
            "{who}: {results:?}"
        );
    }
    for never in ["pat", "nel"] {
        let e = user_in(&env, never).unwrap_or_else(|| panic!("{never}"));
        assert_eq!(attr(&e, "adminDescription"), None, "{never} was touched");
        assert_eq!(
            attr(&e, "sn").as_deref(),
            Some(if never == "pat" { "P" } else { "N" })
        );
    }
    // The group, adopted in place: zed (not in the cloud) stays, newbie (the cloud's) is added.
    assert_eq!(
        members_of(&env.ou, "Adopt Team"),
        vec!["ann", "newbie", "zed"]
    );
    assert!(members_of(&env.ou, "sync-adopt").contains(&"Adopt Team".to_string()));
    // A cloud password lets her log on; a suspension disables that same object.
    env.set_password("ann");
    env.sync();
    assert!(can_bind("ann", USER_PASSWORD));
    env.cloud(&["user", "suspend", "ann"]);
    env.sync();
    let a = user_in(&env, "ann").unwrap_or_else(|| panic!("ann"));
    assert_eq!(guid_of(&a), ann_guid);
    assert_eq!(uac(&a) & 2, 2, "suspended in the cloud: disabled");
    // Removed from the cloud's group: out of the AD group; zed stays.
    env.cloud(&["group", "remove-member", "Adopt Team", "newbie"]);
    env.sync();
    assert_eq!(members_of(&env.ou, "Adopt Team"), vec!["ann", "zed"]);
    ldap_modify(
        &format!("CN=Domain Admins,CN=Users,{DOMAIN}"),
        vec![ldap3::Mod::Delete(
            "member",
            HashSet::from([helpers.as_str()]),
        )],
    );
}

#[test]
fn import_links_ad_to_the_cloud_and_the_agent_then_manages_those_objects() {
    let _dc = DC.read();
    // Adoption off: the import's links stand for it.
    let env = Env::new("import", "");
    let ivy = seed_user(&env.ou, "ivy", Some("Ivy"), Some("Green"), "512");
    ldap_modify(
        &ivy,
        vec![ldap3::Mod::Replace(
            "displayName",
            HashSet::from(["Ivy G. (Sales)"]),
        )],
    );
    let ike = seed_user(&env.ou, "ike", Some("Ike"), Some("Brown"), "514");
    seed_user(&env.ou, "nosn", Some("No"), None, "512");
    let prot = seed_user(&env.ou, "prot", Some("Pro"), Some("Tected"), "512");
    ldap_modify(
        &prot,
        vec![ldap3::Mod::Replace("adminCount", HashSet::from(["1"]))],
    );
    seed_group(
        &format!("CN=Imp Team,{}", env.ou),
        "Imp Team",
        "-2147483646",
        &[&ivy, &ike, &prot],
    );
    seed_group(&format!("CN=Imp List,{}", env.ou), "Imp List", "2", &[&ivy]);
    let before = users_in_ou(&env);
    let ivy_guid = guid_of(&user_in(&env, "ivy").unwrap_or_else(|| panic!()));

    let import = |extra: &[&str]| {
        let base = env
            .config
            .parent()
            .and_then(Path::parent)
            .and_then(Path::parent)
            .unwrap_or_else(|| panic!());
        let out = Command::new(agent_bin())
            .args(["import", "--config"])
            .arg(&env.config)
            .arg("--log-dir")
            .arg(base.join("var/log/ad-sync"))
            .arg("--state-dir")
            .arg(base.join("var/lib/ad-sync"))
            .args(extra)
            .env_remove("CREDENTIALS_DIRECTORY")
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (
            out.status.code(),
            text,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let outcome = |v: &serde_json::Value, kind: &str, name: &str| -> String {
        v["items"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|i| i["kind"] == kind && i["name"] == name)
                    .cloned()
            })
            .map(|i| {
                format!(
                    "{} {}",
                    i["outcome"].as_str().unwrap_or(""),
                    i["message"].as_str().unwrap_or("")
                )
            })
            .unwrap_or_else(|| format!("not reported in {v}"))
    };

    // Dry run: the cloud says what it would do; nothing is created.
    let (code, text, err) = import(&["--dry-run", "--json"]);
    assert_eq!(code, Some(4), "nosn is refused: {text}{err}");
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(outcome(&v, "user", "ivy").starts_with("created"), "{v}");
    assert!(
        outcome(&v, "user", "nosn").starts_with("refused it has no sn"),
        "{v}"
    );
    assert!(
        outcome(&v, "user", "prot").starts_with("skipped it is protected"),
        "{v}"
    );
    assert!(
        outcome(&v, "group", "Imp List").starts_with("skipped it is a distribution group"),
        "{v}"
    );
    assert!(
        outcome(&v, "group", "sync-import").starts_with("skipped it is the sync group"),
        "{v}"
    );
    assert!(env.cloud(&["user", "list"]).contains("no users"));

    // For real; then again, which imports nothing new.
    let (code, text, err) = import(&["--json"]);
    assert_eq!(code, Some(4), "{text}");
    // Progress as it went: AD read, then each object sent of the total.
    let progress = progress_lines(&err);
    let phases: Vec<&str> = progress
        .iter()
        .filter_map(|p| p["phase"].as_str())
        .collect();
    assert!(
        phases.first() == Some(&"reading_ad") && phases.last() == Some(&"done"),
        "{err}"
    );
    let sending = progress
        .iter()
        .find(|p| p["phase"] == "sending")
        .unwrap_or_else(|| panic!("no progress while sending: {err}"));
    assert_eq!(sending["task"], "import");
    assert!(sending["total"].as_u64().unwrap_or(0) >= 3, "{sending}");
    let credential = ad_sync::secrets::FileStore::beside_config(&env.config)
        .read(ad_sync::secrets::AGENT_CREDENTIAL)
        .unwrap_or_else(|e| panic!("{e}"));
    for secret in [testbed::SVC_PASSWORD, credential.expose()] {
        assert!(
            secret.len() > 8 && !text.contains(secret) && !err.contains(secret),
            "a secret in the import's output"
        );
    }
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(
        outcome(&v, "membership", "Imp Team <- ivy").starts_with("created"),
        "{v}"
    );
    assert!(
        !text.contains("Tected"),
        "a protected account left AD: {text}"
    );
    let users: serde_json::Value = serde_json::from_str(&env.cloud(&["user", "list", "--json"]))
        .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = users["users"]
        .as_array()
        .map(|a| a.iter().filter_map(|u| u["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, vec!["ike", "ivy"]);
    let ivy_cloud = &users["users"][1];
    assert_eq!(ivy_cloud["links"][0]["domain"], DOMAIN);
    assert_eq!(ivy_cloud["user"]["display_name"], "Ivy G. (Sales)");
    assert_eq!(
        users["users"][0]["user"]["suspended"], true,
        "ike is disabled in AD: {users}"
    );
    let groups = env.cloud(&["group", "list"]);
    assert!(
        groups.contains("Imp Team members: ike, ivy [linked: DC=example,DC=com objectGUID "),
        "{groups}"
    );
    let (code, text, _) = import(&[]);
    assert_eq!(code, Some(4), "nosn is refused again: {text}");
    assert!(
        text.contains("users: 2 already") && !text.contains(" created"),
        "{text}"
    );

    // The agent now manages exactly those objects: nothing created, nothing colliding.
    let text = env.sync_allowing_failures();
    assert_eq!(created_adopted(&text), (0, 3), "{text}");
    assert_eq!(users_in_ou(&env), before, "no duplicates");
    let results = env.results();
    assert!(
        !results.iter().any(|(_, s, _)| s == "failed"),
        "{results:?}"
    );
    let i = user_in(&env, "ivy").unwrap_or_else(|| panic!());
    assert_eq!(guid_of(&i), ivy_guid);
    assert_eq!(
        attr(&i, "displayName").as_deref(),
        Some("Ivy G. (Sales)"),
        "kept as imported"
    );
    // A forged link: the cloud (or whoever holds its database) links a new cloud user to an
    // account of the container this agent never imported, and another to the service account.
    // Adoption is off: neither link is consent, both are refused and said so, and neither
    // account is touched.
    let victim = seed_user(&env.ou, "victim", Some("Vic"), Some("Tim"), "512");
    let victim_guid = guid_of(&user_in(&env, "victim").unwrap_or_else(|| panic!("victim")));
    let svc = search(
        DOMAIN,
        &format!("(sAMAccountName={})", testbed::accounts::GOOD),
    );
    let svc_guid = guid_of(svc.first().unwrap_or_else(|| panic!("svc-sync")));
    {
        let store = ad_sync_cloud::server::store::Store::open(&env.cloud.db)
            .unwrap_or_else(|e| panic!("{e}"));
        let auth = store
            .authenticate(credential.expose())
            .unwrap_or_else(|e| panic!("{}", e.message))
            .unwrap_or_else(|| panic!("the agent's credential"));
        let forged = |guid: &[u8], name: &str| ad_sync::cloud::api::ImportUser {
            guid: ad_sync::directory::object::guid_string(guid),
            username: name.into(),
            given_name: "For".into(),
            surname: "Ged".into(),
            display_name: None,
            email: None,
            enabled: true,
        };
        store
            .import(
                &auth,
                &ad_sync::cloud::api::ImportRequest {
                    users: vec![
                        forged(&victim_guid, "forged"),
                        forged(&svc_guid, "forged-svc"),
                    ],
                    ..Default::default()
                },
                ad_sync::time_fmt::now_unix(),
            )
            .unwrap_or_else(|e| panic!("{}", e.message));
    }
    env.sync_allowing_failures();
    let results = env.results();
    assert!(
        results.iter().any(|(_, s, m)| s == "failed"
            && m.contains("forged")
            && m.contains(&victim)
            && m.contains("this agent's import never made that link")),
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .any(|(_, s, m)| s == "failed" && m.contains("forged-svc")),
        "{results:?}"
    );
    let v = user_in(&env, "victim").unwrap_or_else(|| panic!("victim"));
    assert_eq!(
        attr(&v, "adminDescription"),
        None,
        "the victim was taken over"
    );
    assert_eq!(attr(&v, "sn").as_deref(), Some("Tim"));
    assert!(user_in(&env, "forged").is_none() && user_in(&env, "forged-svc").is_none());

    // A cloud update changes that same AD object.
    env.cloud(&["user", "update", "ivy", "--surname", "Greenfield"]);
    env.sync();
    let i = user_in(&env, "ivy").unwrap_or_else(|| panic!());
    assert_eq!(
        (guid_of(&i), attr(&i, "sn")),
        (ivy_guid, Some("Greenfield".to_string()))
    );

    // --group: one group's members, nested included, and nothing else.
    let oz = seed_user(&env.ou, "oz", Some("Oz"), Some("O"), "512");
    let ozzy = seed_user(&env.ou, "ozzy", Some("Ozzy"), Some("O"), "512");
    seed_user(&env.ou, "outsider", Some("Out"), Some("Side"), "512");
    let sub = format!("CN=Only Sub,{}", env.ou);
    seed_group(&sub, "Only Sub", "-2147483646", &[&ozzy]);
    let only = format!("CN=Only Team,{}", env.ou);
    seed_group(&only, "Only Team", "-2147483646", &[&oz, &sub]);
    let (code, text, err) = import(&["--group", &only]);
    assert_eq!(code, Some(0), "{text}{err}");
    let list = env.cloud(&["user", "list"]);
    assert!(
        list.contains("oz (") && list.contains("ozzy (") && !list.contains("outsider"),
        "{list}"
    );
    let groups = env.cloud(&["group", "list"]);
    assert!(
        groups.contains("Only Sub members: ozzy")
            && groups.contains("Only Team members: Only Sub, oz"),
        "{groups}"
    );
    let (code, _, err) = import(&["--group", "CN=Nope,OU=Staff,DC=example,DC=com"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--group") && err.contains("no group with that DN"),
        "{err}"
    );
}

fn sid_of(e: &ldap3::SearchEntry) -> String {
    e.bin_attrs
        .get("objectSid")
        .and_then(|v| v.first())
        .and_then(|b| ad_sync::directory::sid::to_string(b))
        .unwrap_or_else(|| panic!("no objectSid"))
}

/// Get-Changes-All, as `dsacl` writes an extended right.
const REPLICATE_ALL: &str = "1131f6ad-9c07-11d1-f79f-00c04fc2dcd2";

/// Power read from AD's ACLs and from nesting, live: an account holding a replication right on
/// the domain head, the member of a group holding WriteDACL on it, and an account nested two
/// levels into Domain Admins after it was synced are refused (and said so to the cloud), while
/// an ordinary account beside them is taken over; the read itself, bound as the service
/// account, names the service account and proves a default Samba domain completely.
#[test]
fn power_read_from_acls_and_nesting_is_never_handed_to_the_cloud() {
    let _dc = DC.read();
    let env = Env::new(
        "tier0",
        "adopt_existing_users = true\nadopt_existing_groups = true",
    );
    let dc = &bed().dc1;
    let repl = seed_user(&env.ou, "t0-repl", None, None, "512");
    let wd = seed_user(&env.ou, "t0-wd", None, None, "512");
    let plain = seed_user(&env.ou, "t0-plain", None, None, "512");
    let group = format!("CN=t0-WD-Group,{}", testbed::OU_UNDELEGATED);
    seed_group(&group, "t0-wd-group", "-2147483646", &[&wd]);
    let sid = |dn: &str| {
        let cn = dn.split(',').next().unwrap_or("").trim_start_matches("CN=");
        let e = search(DOMAIN, &format!("(cn={cn})"));
        sid_of(e.first().unwrap_or_else(|| panic!("{dn}")))
    };
    let ace_repl = format!("(OA;;CR;{REPLICATE_ALL};;{})", sid(&repl));
    let ace_wd = format!("(A;;WD;;;{})", sid(&group));
    dc.dsacl("set", DOMAIN, &ace_repl)
        .unwrap_or_else(|e| panic!("{e}"));
    dc.dsacl("set", DOMAIN, &ace_wd)
        .unwrap_or_else(|e| panic!("{e}"));

    // The read, as the agent makes it, with CN=Users as the Root User container (where the
    // wizard proposes it, and where the service account lives).
    let tier0 = block_on(async {
        let (mut l, ok) = ldaps_as(testbed::accounts::GOOD, testbed::SVC_PASSWORD).await;
        assert!(ok, "the service account binds");
        let scope = ad_sync_core_scope(&format!("CN=Users,{DOMAIN}"));
        let account = ad_sync::directory::bind::AccountName::parse(testbed::accounts::GOOD)
            .unwrap_or_else(|e| panic!("{e}"));
        let t = ad_sync::directory::power::tier0(
            &l,
            std::time::Duration::from_secs(10),
            &scope,
            Some(&account),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let _ = l.unbind().await;
        t
    });
    assert_eq!(
        tier0.blanket(),
        None,
        "a default Samba domain is read completely and no power is held by everyone"
    );
    let why_of = |sam: &str| {
        let e = search(DOMAIN, &format!("(sAMAccountName={sam})"));
        tier0.why_guid(&guid_of(e.first().unwrap_or_else(|| panic!("{sam}"))))
    };
    for (sam, words) in [
        (testbed::accounts::GOOD, "own service account"),
        ("t0-repl", "Replicating Directory Changes All"),
        ("t0-wd", "WriteDACL"),
        (testbed::accounts::NESTED_ADMIN, "member of Helpdesk Admins"),
        ("Administrator", "it is a member of"),
    ] {
        let why = why_of(sam);
        assert!(
            why.as_deref().is_some_and(|w| w.contains(words)),
            "{sam}: {why:?}"
        );
    }
    assert_eq!(why_of("t0-plain"), None);

    // The cloud asks for all three by name, with adoption on: the ordinary one is taken over,
    // the privileged ones are refused with the reason.
    for name in ["t0-repl", "t0-wd", "t0-plain"] {
        env.add_user(name);
    }
    env.sync_allowing_failures();
    let results = env.results();
    let failed = |words: &str| {
        results
            .iter()
            .any(|(_, s, m)| s == "failed" && m.contains(words))
    };
    assert!(
        failed("t0-repl") && failed("Replicating Directory Changes All"),
        "{results:?}"
    );
    assert!(failed("t0-wd") && failed("WriteDACL"), "{results:?}");
    for sam in ["t0-repl", "t0-wd"] {
        let e = user_in(&env, sam).unwrap_or_else(|| panic!("{sam}"));
        assert_eq!(attr(&e, "adminDescription"), None, "{sam} was taken over");
    }
    let taken = user_in(&env, "t0-plain").unwrap_or_else(|| panic!("t0-plain"));
    assert!(
        attr(&taken, "adminDescription").is_some_and(|m| m.starts_with("ad-sync:")),
        "the ordinary account is taken over"
    );

    // After it was synced, an administrator nests it two levels into Domain Admins: the
    // cloud's next password is refused in the same run, and said so.
    env.set_password("t0-plain");
    env.sync_allowing_failures();
    assert!(
        can_bind("t0-plain", USER_PASSWORD),
        "the first password is set"
    );
    let l2 = format!("CN=t0-L2,{}", testbed::OU_UNDELEGATED);
    let l1 = format!("CN=t0-L1,{}", testbed::OU_UNDELEGATED);
    seed_group(&l2, "t0-L2", "-2147483646", &[&plain]);
    seed_group(&l1, "t0-L1", "-2147483646", &[&l2]);
    let domain_admins = format!("CN=Domain Admins,CN=Users,{DOMAIN}");
    ldap_modify(
        &domain_admins,
        vec![ldap3::Mod::Add("member", HashSet::from([l1.as_str()]))],
    );
    let f = env.dir.join("pw2.txt");
    std::fs::write(&f, "An0ther!Cloud-Pass-5512").unwrap_or_else(|e| panic!("{e}"));
    env.cloud(&[
        "user",
        "set-password",
        "t0-plain",
        "--password-file",
        &f.display().to_string(),
    ]);
    let seen = env.results().len();
    env.sync_allowing_failures();
    let after = env.results();
    ldap_modify(
        &domain_admins,
        vec![ldap3::Mod::Delete("member", HashSet::from([l1.as_str()]))],
    );
    for ace in [&ace_repl, &ace_wd] {
        let _ = dc.dsacl("delete", DOMAIN, ace);
    }
    let new: Vec<_> = after.iter().skip(seen).collect();
    assert!(
        new.iter().any(|(_, s, m)| s == "failed"
            && m.contains("t0-plain")
            && m.contains("member of t0-L1")
            && m.contains("Domain Admins")),
        "{new:?}"
    );
    assert!(!can_bind("t0-plain", "An0ther!Cloud-Pass-5512"));
    assert!(
        can_bind("t0-plain", USER_PASSWORD),
        "the old password stays"
    );
}

/// The agent's scope with this Root User container (the sync group in it).
fn ad_sync_core_scope(root: &str) -> ad_sync_agent::plan::Scope {
    let parse = |t: &str| {
        ad_sync::dn::Dn::parse(t)
            .unwrap_or_else(|e| panic!("{t}: {}", e.message))
            .dn
    };
    ad_sync_agent::plan::Scope {
        root: parse(root),
        sync_group: Some(parse(&format!("CN=Cloud Groups,{}", testbed::OU_STAFF))),
        dns_domain: "example.com".into(),
        host: testbed::DC1_HOST.into(),
        encrypted: true,
    }
}

/// Replaces attributes of `dn` as an administrator does in ADUC.
async fn replace_attrs(l: &mut ldap3::Ldap, dn: &str, values: &[(&str, &str)]) {
    let mods = values
        .iter()
        .map(|(a, v)| ldap3::Mod::Replace(*a, HashSet::from([*v])))
        .collect();
    l.modify(dn, mods)
        .await
        .and_then(|r| r.success())
        .unwrap_or_else(|e| panic!("modify {dn}: {e}"));
}

/// The change reader AD as a source stands on: DirSync (`directory::dirsync`) against the real
/// DC, bound as the service account with only the read rights it already has
/// (`LDAP_DIRSYNC_OBJECT_SECURITY`, no replication right). From a first full read's cookie, each
/// change comes back alone and only with what changed: a creation, an attribute, a membership
/// added and removed value by value, a rename, a move (a new parentGUID), a deletion (the same
/// objectGUID, `isDeleted`). Samba 4.17 answers every read in one page, so the "more" loop is
/// proven on recorded pages in the module's own tests.
#[test]
fn dirsync_with_the_service_accounts_rights_sees_each_change_alone() {
    use ad_sync::directory::dirsync::{self, Delta};
    let _dc = DC.read().unwrap_or_else(|e| e.into_inner());
    let bed = bed();
    let ou = "OU=DirSync Test,DC=example,DC=com";
    let other = "OU=DirSync Moved,DC=example,DC=com";
    for o in [ou, other] {
        ldap_add(o, vec![("objectClass", vec!["organizationalUnit"])]);
    }
    let attrs = [
        "objectGUID",
        "parentGUID",
        "name",
        "objectClass",
        "sAMAccountName",
        "displayName",
        "member",
        "isDeleted",
    ];
    let filter = "(|(objectClass=user)(objectClass=group))";
    block_on(async {
        let (svc, ok) = ldaps_as(testbed::accounts::GOOD, testbed::SVC_PASSWORD).await;
        assert!(ok, "the service account cannot bind");
        let mut admin = admin_on(&bed.dc1).await;
        let timeout = std::time::Duration::from_secs(30);
        let mut dc = dirsync::Dc::new(&svc, DOMAIN, filter, &attrs, timeout)
            .unwrap_or_else(|e| panic!("{e}"));
        // Everything once, then only what changes.
        let read = async |dc: &mut dirsync::Dc<'_>, cookie: &[u8]| {
            let mut all: Vec<Delta> = Vec::new();
            let done = dirsync::drain(dc, cookie, |d, _a| {
                all.extend(d);
                async { Ok::<(), String>(()) }
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            (all, done.cookie)
        };
        let (first, cookie) = read(&mut dc, b"").await;
        assert!(
            first
                .iter()
                .any(|d| d.values.get("sAMAccountName") == Some(&vec!["svc-sync".to_string()])),
            "the first read holds every user"
        );
        assert!(
            first.iter().all(|d| !d.values.contains_key("unicodePwd")),
            "no secret"
        );

        let (nothing, cookie) = read(&mut dc, &cookie).await;
        assert!(
            nothing.iter().all(|d| !d.dn.contains("DirSync Test")),
            "{nothing:?}"
        );

        let ann = testbed::add_user(&mut admin, ou, "dsync-ann", "512")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let group = format!("CN=dsync-group,{ou}");
        admin
            .add(
                &group,
                vec![
                    ("objectClass", HashSet::from(["group"])),
                    ("sAMAccountName", HashSet::from(["dsync-group"])),
                ],
            )
            .await
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("{e}"));
        let (created, cookie) = read(&mut dc, &cookie).await;
        let ann_delta = created
            .iter()
            .find(|d| d.dn.eq_ignore_ascii_case(&ann))
            .unwrap_or_else(|| panic!("the new user is not in {created:?}"));
        let ann_guid = ann_delta.guid.clone();
        assert!(created.iter().any(|d| d.dn.eq_ignore_ascii_case(&group)));

        // One attribute: the change alone, and only that attribute of the object's.
        replace_attrs(&mut admin, &ann, &[("displayName", "Ann Example")]).await;
        let (changed, cookie) = read(&mut dc, &cookie).await;
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert_eq!(changed[0].guid, ann_guid);
        assert_eq!(
            changed[0].values.get("displayName"),
            Some(&vec!["Ann Example".to_string()])
        );
        assert!(
            !changed[0].values.contains_key("sAMAccountName"),
            "only what changed: {changed:?}"
        );

        // Membership, value by value.
        let member = |add: bool| {
            if add {
                ldap3::Mod::Add("member", HashSet::from([ann.as_str()]))
            } else {
                ldap3::Mod::Delete("member", HashSet::from([ann.as_str()]))
            }
        };
        for add in [true, false] {
            admin
                .modify(&group, vec![member(add)])
                .await
                .and_then(|r| r.success())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let (links, cookie) = read(&mut dc, &cookie).await;
        let g = links
            .iter()
            .find(|d| d.dn.eq_ignore_ascii_case(&group))
            .unwrap_or_else(|| panic!("the group's membership change is not in {links:?}"));
        let l = g.links.get("member").cloned().unwrap_or_default();
        let has = |v: &[String]| v.iter().any(|x| x.contains("dsync-ann"));
        assert!(has(&l.removed), "{g:?}");
        assert!(
            !g.values.contains_key("member"),
            "values, not the whole list: {g:?}"
        );

        // Rename, then move: the same GUID, a new name, then a new parent.
        let parent_before = ann_delta.parent_guid.clone();
        admin
            .modifydn(&ann, "CN=dsync-ann2", true, None)
            .await
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("{e}"));
        let (renamed, cookie) = read(&mut dc, &cookie).await;
        let r = renamed
            .iter()
            .find(|d| d.guid == ann_guid)
            .unwrap_or_else(|| panic!("the rename is not in {renamed:?}"));
        assert_eq!(r.values.get("name"), Some(&vec!["dsync-ann2".to_string()]));
        let ann2 = format!("CN=dsync-ann2,{ou}");
        admin
            .modifydn(&ann2, "CN=dsync-ann2", true, Some(other))
            .await
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("{e}"));
        let (moved, cookie) = read(&mut dc, &cookie).await;
        let mv = moved
            .iter()
            .find(|d| d.guid == ann_guid)
            .unwrap_or_else(|| panic!("the move is not in {moved:?}"));
        assert!(mv.dn.contains("DirSync Moved"), "{mv:?}");
        assert!(
            mv.parent_guid.is_some() && mv.parent_guid != parent_before,
            "{mv:?}"
        );

        // Deletion. With only read rights a deleted object is not seen: its tombstone is in
        // CN=Deleted Objects, which only administrators may list (on Windows as here). The full
        // reconciliation finds it gone instead; an administrator who wants deletions at once
        // grants the service account List Contents and Read Property there (Microsoft's
        // documented `dsacls "CN=Deleted Objects,…" /G <account>:LCRP`), and then DirSync gives
        // the same objectGUID marked deleted.
        admin
            .delete(&format!("CN=dsync-ann2,{other}"))
            .await
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("{e}"));
        let (unseen, cookie) = read(&mut dc, &cookie).await;
        assert!(
            unseen.iter().all(|d| d.guid != ann_guid),
            "a tombstone the account may not read was returned: {unseen:?}"
        );
        let deleted_objects = format!("CN=Deleted Objects,{DOMAIN}");
        bed.dc1
            .add_ace_to_deleted(&deleted_objects, &format!("(A;;LCRP;;;{})", bed.good_sid))
            .unwrap_or_else(|e| panic!("grant LCRP on Deleted Objects: {e}"));
        let bob = testbed::add_user(&mut admin, ou, "dsync-bob", "512")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (bobs, cookie) = read(&mut dc, &cookie).await;
        let bob_guid = bobs
            .iter()
            .find(|d| d.dn.eq_ignore_ascii_case(&bob))
            .map(|d| d.guid.clone())
            .unwrap_or_else(|| panic!("{bobs:?}"));
        admin
            .delete(&bob)
            .await
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("{e}"));
        let (deleted, _) = read(&mut dc, &cookie).await;
        let del = deleted
            .iter()
            .find(|d| d.guid == bob_guid)
            .unwrap_or_else(|| panic!("the deletion is not in {deleted:?}"));
        assert!(del.deleted, "{del:?}");
        let _ = admin.unbind().await;
    });
}

/// `ad-sync-agent export`: AD as a source, end to end against the real DC and cloud. Users made
/// in AD inside the export's container reach the cloud with AD as their authority (their
/// mapped fields, the objectGUID as link); a change in AD (a new title, a rename) reaches it,
/// a disabled account is suspended, one moved out of the container is suspended and kept;
/// a protected account, a computer and the service account never reach it; the second run reads
/// only what changed since the cloud's cursor; a cloud → AD run of the same agent never sees
/// what AD sent (no ping-pong).
#[test]
fn export_sends_ads_users_and_their_changes_to_the_cloud() {
    let _dc = DC.read().unwrap_or_else(|e| e.into_inner());
    let env = Env::new("export", "");
    let dc = &bed().dc1;
    let export = |extra: &[&str]| env.export(extra);
    let from_ad = || env.users_from_ad();
    // Users in the container as an administrator makes them in AD.
    let (ann, bob, adm) = block_on(async {
        let mut l = admin_on(dc).await;
        let mut add = async |sam: &str, given: &str, sn: &str| {
            let dn = testbed::add_user(&mut l, &env.ou, sam, "512")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            replace_attrs(
                &mut l,
                &dn,
                &[("givenName", given), ("sn", sn), ("title", "Engineer")],
            )
            .await;
            dn
        };
        let ann = add("x-ann", "Ann", "Lee").await;
        let bob = add("x-bob", "Bob", "Ray").await;
        let adm = add("x-adm", "Adm", "In").await;
        replace_attrs(&mut l, &adm, &[("adminCount", "1")]).await;
        let _ = l.unbind().await;
        (ann, bob, adm)
    });
    let _ = adm;

    let (code, report, text) = export(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(report["full"], true, "{text}");
    assert_eq!(report["created"], 2, "{text}");
    let users = from_ad();
    assert_eq!(
        users.keys().cloned().collect::<Vec<_>>(),
        ["x-ann", "x-bob"],
        "only the two ordinary users: never the protected one, a computer or the service account"
    );
    assert_eq!(users["x-ann"]["attributes"]["title"], "Engineer");
    assert_eq!(users["x-ann"]["user"]["given_name"], "Ann");
    let left_out: Vec<String> = report["left_out"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| p[1].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        left_out
            .iter()
            .any(|w| w.contains("adminCount=1") && w.contains("name it")),
        "{left_out:?}"
    );
    // The domain's other accounts (other tests', the DC's computer, the built-ins) are only
    // counted: the list holds what is inside the scope's container, the protected account
    // and the agent's sync group.
    assert_eq!(left_out.len(), 2, "{left_out:?}");
    assert!(
        left_out
            .iter()
            .any(|w| w.contains("the agent's sync group")),
        "{left_out:?}"
    );
    assert!(report["left_out_count"].as_u64().unwrap_or(0) > 1, "{text}");

    // Nothing changed: the second run reads from the cloud's cursor and finds nothing.
    let (code, report, text) = export(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(report["full"], false, "{text}");
    assert_eq!(report["created"], 0, "{text}");

    // Changes in AD: a new title and a rename of Ann, Bob disabled, then Bob moved out.
    block_on(async {
        let mut l = admin_on(dc).await;
        replace_attrs(
            &mut l,
            &ann,
            &[("title", "Lead"), ("sAMAccountName", "x-ann2")],
        )
        .await;
        replace_attrs(&mut l, &bob, &[("userAccountControl", "514")]).await;
        let _ = l.unbind().await;
    });
    let (code, report, text) = export(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(report["updated"], 2, "{text}");
    let users = from_ad();
    assert_eq!(users["x-ann2"]["attributes"]["title"], "Lead");
    assert_eq!(users["x-bob"]["user"]["suspended"], true);

    block_on(async {
        let mut l = admin_on(dc).await;
        l.modifydn(&bob, "CN=x-bob", true, Some(testbed::OU_STAFF))
            .await
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = l.unbind().await;
    });
    let (code, report, text) = export(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(report["suspended"], 1, "{text}");
    let gone = env.cloud(&["user", "list", "--deleted", "--json"]);
    assert!(gone.contains("\"x-bob\""), "{gone}");

    // The same agent's cloud → AD run gets none of it back.
    let out = env.run(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let applied = String::from_utf8_lossy(&out.stdout);
    assert!(!applied.contains("x-ann"), "{applied}");
}

/// AD as a source, groups: security groups in the export's container reach the cloud with AD as
/// their authority, their description and their members by objectGUID (a user, and a nested
/// group); the agent's sync group never does. Members added and removed in AD and a rename
/// follow; a group moved out of the container is marked deleted and kept; a deletion over the
/// threshold is held until approved; a group brought back from its tombstone is restored.
#[test]
fn groups_and_their_members_reach_the_cloud_from_ad() {
    let _dc = DC.read().unwrap_or_else(|e| e.into_inner());
    let env = Env::new("xgroups", "direction = \"ad-to-cloud\"\n");
    let dc = &bed().dc1;
    let export = |extra: &[&str]| env.export(extra);
    let groups_from_ad = |deleted: bool| -> BTreeMap<String, serde_json::Value> {
        let mut args = vec!["group", "list", "--source", "ad", "--json"];
        if deleted {
            args.push("--deleted");
        }
        let text = env.cloud(&args);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        v["groups"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|g| (g["name"].as_str().unwrap_or_default().to_string(), g))
            .collect()
    };
    let members = |g: &serde_json::Value| -> Vec<String> {
        g["members"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|m| m.as_str().unwrap_or_default().to_string())
            .collect()
    };
    let team = format!("CN=xg-team,{}", env.ou);
    let leads = format!("CN=xg-leads,{}", env.ou);
    let (ann, bob) = block_on(async {
        let mut l = admin_on(dc).await;
        let mut add = async |sam: &str| {
            let dn = testbed::add_user(&mut l, &env.ou, sam, "512")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            replace_attrs(&mut l, &dn, &[("givenName", "Xg"), ("sn", sam)]).await;
            dn
        };
        let ann = add("xg-ann").await;
        let bob = add("xg-bob").await;
        let _ = l.unbind().await;
        (ann, bob)
    });
    seed_group(&leads, "xg-leads", "-2147483646", &[&bob]);
    seed_group(&team, "xg-team", "-2147483646", &[&ann, &leads]);
    block_on(async {
        let mut l = admin_on(dc).await;
        replace_attrs(&mut l, &team, &[("description", "The team")]).await;
        let _ = l.unbind().await;
    });

    let (code, r, text) = export(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(r["created"], 4, "two users and two groups: {text}");
    let groups = groups_from_ad(false);
    assert_eq!(
        groups.keys().cloned().collect::<Vec<_>>(),
        ["xg-leads", "xg-team"],
        "never the agent's sync group: {groups:?}"
    );
    assert_eq!(members(&groups["xg-team"]), ["xg-ann", "xg-leads"]);
    assert_eq!(members(&groups["xg-leads"]), ["xg-bob"]);
    assert_eq!(groups["xg-team"]["attributes"]["description"], "The team");
    assert_eq!(groups["xg-team"]["source"], "ad");

    // In AD: Bob added to the team, Ann taken out, the team renamed.
    block_on(async {
        let mut l = admin_on(dc).await;
        l.modify(
            &team,
            vec![
                ldap3::Mod::Add("member", HashSet::from([bob.as_str()])),
                ldap3::Mod::Delete("member", HashSet::from([ann.as_str()])),
            ],
        )
        .await
        .and_then(|r| r.success())
        .unwrap_or_else(|e| panic!("{e}"));
        replace_attrs(&mut l, &team, &[("sAMAccountName", "xg-team2")]).await;
        let _ = l.unbind().await;
    });
    let (code, r, text) = export(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(r["full"], false, "{text}");
    let groups = groups_from_ad(false);
    assert_eq!(
        groups.keys().cloned().collect::<Vec<_>>(),
        ["xg-leads", "xg-team2"],
        "{text}"
    );
    assert_eq!(
        members(&groups["xg-team2"]),
        ["xg-bob", "xg-leads"],
        "{text}"
    );

    // Leads moved out of the container: marked deleted, kept (within the budget: 1 of 4).
    block_on(async {
        let mut l = admin_on(dc).await;
        l.modifydn(&leads, "CN=xg-leads", true, Some(testbed::OU_STAFF))
            .await
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = l.unbind().await;
    });
    let (code, r, text) = export(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(r["suspended"], 1, "{text}");
    assert!(groups_from_ad(true).contains_key("xg-leads"), "{text}");
    assert!(!groups_from_ad(false).contains_key("xg-leads"), "{text}");

    // The team deleted in AD: over the budget within the window, so held until approved. (The
    // service account cannot list Deleted Objects, as on a Windows domain by default, so
    // DirSync does not show it the deletion: the reconciliation finds it.)
    block_on(async {
        let mut l = admin_on(dc).await;
        l.delete(&team)
            .await
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = l.unbind().await;
    });
    let (code, r, text) = export(&["--resync"]);
    assert_eq!(code, Some(3), "held by the threshold: {text}");
    assert_eq!(r["held"], 1, "{text}");
    assert!(groups_from_ad(false).contains_key("xg-team2"), "{text}");
    let (code, list) = env.pending(&["--json"]);
    assert_eq!(code, Some(3), "{list}");
    let listed: serde_json::Value =
        serde_json::from_str(&list).unwrap_or_else(|e| panic!("{e}: {list}"));
    let held = &listed["held"][0];
    assert_eq!(held["kind"], "ad_group", "{list}");
    assert_eq!(held["name"], "xg-team2", "{list}");
    let id = held["id"].as_str().unwrap_or_default().to_string();
    // Approved: sent at once.
    let (code, text) = env.pending(&["--approve", &id]);
    assert_eq!(code, Some(0), "{text}");
    let gone = groups_from_ad(true);
    assert!(gone.contains_key("xg-team2"), "{gone:?}");
    assert_eq!(
        members(&gone["xg-team2"]),
        ["xg-bob", "xg-leads"],
        "kept with its members"
    );

    // Brought back from its tombstone (the same objectGUID): restored.
    reanimate(dc, "xg-team2", &team);
    let (code, r, text) = export(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(r["restored"], 1, "{text}");
    assert!(groups_from_ad(false).contains_key("xg-team2"), "{text}");
}

/// AD as a source never sends a privileged account, even when nothing on the account says so:
/// `svc-nested` is in BUILTIN\Administrators through Helpdesk Admins and has no adminCount
/// (Samba never runs SDProp; Windows runs it hourly). The agent reads who holds power (Tier 0)
/// and leaves it out, saying why; before, it was sent, and only the cloud's own rules stopped it.
#[test]
fn a_privileged_account_without_admincount_is_never_exported() {
    let _dc = DC.read().unwrap_or_else(|e| e.into_inner());
    let env = Env::new("xpriv", "direction = \"ad-to-cloud\"\n");
    let nested = block_on(async {
        let mut l = admin_on(&bed().dc1).await;
        let (found, _) = l
            .search(
                testbed::BASE,
                ldap3::Scope::Subtree,
                &format!("(sAMAccountName={})", testbed::accounts::NESTED_ADMIN),
                vec!["objectGUID"],
            )
            .await
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = l.unbind().await;
        found
            .into_iter()
            .next()
            .map(|e| {
                ad_sync::directory::object::guid_string(&guid_of(&ldap3::SearchEntry::construct(e)))
            })
            .unwrap_or_else(|| panic!("no {}", testbed::accounts::NESTED_ADMIN))
    });
    let (code, r, text) = env.export(&["--container", "CN=Users,DC=example,DC=com"]);
    // The testbed's accounts there have no given name, which the cloud requires: refused (4).
    assert!(matches!(code, Some(0 | 4)), "{text}");
    let left_out: Vec<(String, String)> = r["left_out"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap_or_default().to_string(),
                p[1].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let why = left_out
        .iter()
        .find(|(g, _)| *g == nested)
        .map(|(_, w)| w.clone())
        .unwrap_or_else(|| panic!("{nested} is not left out: {text}"));
    assert!(why.starts_with("it is privileged:"), "{why}");
    assert!(
        !r["refused"].to_string().contains(&nested),
        "never sent, so never refused: {text}"
    );
    assert!(
        !env.users_from_ad()
            .contains_key(testbed::accounts::NESTED_ADMIN)
    );
}

/// Brings the object `sam` back from its tombstone to `dn` (the same objectGUID), as AD's
/// Recycle Bin or ADRestore do.
fn reanimate(dc: &testbed::Dc, sam: &str, dn: &str) {
    block_on(async {
        let mut l = admin_on(dc).await;
        testbed::reanimate(&mut l, sam, dn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = l.unbind().await;
    });
}

/// Kills the agent service this test started (by its PID) when the test ends, however it ends.
struct Service(std::process::Child);

impl Service {
    /// `ad-sync-agent run` on the env's install, logging at `log` (`AD_SYNC_LOG`).
    fn start(env: &Env, log: &str) -> Service {
        let base = env.base();
        Service(
            Command::new(agent_bin())
                .args(["run", "--config"])
                .arg(&env.config)
                .arg("--state-dir")
                .arg(base.join("var/lib/ad-sync"))
                .arg("--log-dir")
                .arg(base.join("var/log/ad-sync"))
                .env("AD_SYNC_LOG", log)
                .env_remove("CREDENTIALS_DIRECTORY")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("ad-sync-agent run: {e}")),
        )
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// AD as a source, as the service runs it: with `[sync] direction = "ad-to-cloud"`, the agent's
/// loop sends AD's changes after each heartbeat, under the config's scope (a container, a
/// security group counted through nesting, a filter) and its attribute map (a remapped row), and
/// writes nothing to AD. `status` shows the last export.
#[test]
fn the_service_keeps_the_cloud_in_step_with_ad_when_ad_is_the_source() {
    let _dc = DC.read().unwrap_or_else(|e| e.into_inner());
    let ou = format!("OU=t-srcsvc,{}", testbed::OU_STAFF);
    // The scope's groups exist before the install, whose checks read them (source.scope).
    let groups = format!("OU=t-srcsvc-groups,{}", testbed::OU_STAFF);
    ldap_add(
        &groups,
        vec![("objectClass", vec!["top", "organizationalUnit"])],
    );
    let outer = format!("CN=Src Outer,{groups}");
    let inner = format!("CN=Src Inner,{groups}");
    for (dn, sam) in [(&outer, "src-outer"), (&inner, "src-inner")] {
        ldap_add(
            dn,
            vec![
                ("objectClass", vec!["top", "group"]),
                ("sAMAccountName", vec![sam]),
                ("groupType", vec!["-2147483646"]),
            ],
        );
    }
    let sync = format!(
        "direction = \"ad-to-cloud\"\n[source]\ngroups = [\"{outer}\"]\nfilter = \"(department=*)\"\n[mapping.user]\ntitle = \"department\"\n"
    );
    let env = Env::new("srcsvc", &sync);
    let dc = &bed().dc1;
    // Ann is in the scope through Inner, a member of Outer; Bob is in no scope group; Cid is
    // in Inner but has no department, which the filter asks for.
    let ann = block_on(async {
        let mut l = admin_on(dc).await;
        let mut add = async |sam: &str, department: Option<&str>| {
            let dn = testbed::add_user(&mut l, &ou, sam, "512")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            replace_attrs(&mut l, &dn, &[("givenName", "Src"), ("sn", sam)]).await;
            if let Some(d) = department {
                replace_attrs(&mut l, &dn, &[("department", d), ("title", "ignored")]).await;
            }
            dn
        };
        let ann = add("src-ann", Some("R&D")).await;
        let _bob = add("src-bob", Some("Ops")).await;
        let cid = add("src-cid", None).await;
        for (group, member) in [(&inner, &ann), (&inner, &cid), (&outer, &inner)] {
            l.modify(
                group,
                vec![ldap3::Mod::Add("member", HashSet::from([member.as_str()]))],
            )
            .await
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("add {member} to {group}: {e}"));
        }
        let _ = l.unbind().await;
        ann
    });
    // A cloud user in the sync group: with AD as the only source, it must not reach AD.
    env.add_user("src-cloudonly");
    let from_ad = || env.users_from_ad();
    let wait_for = |what: &str, ok: &dyn Fn(&BTreeMap<String, serde_json::Value>) -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let users = from_ad();
            if ok(&users) {
                return users;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: the cloud holds {users:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    };

    let _service = Service::start(&env, "info");

    let users = wait_for("Ann exported", &|u| u.contains_key("src-ann"));
    assert_eq!(
        users.keys().cloned().collect::<Vec<_>>(),
        ["src-ann"],
        "only Ann: Bob is in no scope group, Cid fails the filter"
    );
    assert_eq!(
        users["src-ann"]["attributes"]["title"], "R&D",
        "the title row is mapped to department"
    );

    // A change in AD reaches the cloud through the running service.
    block_on(async {
        let mut l = admin_on(dc).await;
        replace_attrs(&mut l, &ann, &[("department", "Research")]).await;
        let _ = l.unbind().await;
    });
    wait_for("the new department", &|u| {
        u.get("src-ann")
            .is_some_and(|a| a["attributes"]["title"] == "Research")
    });
    block_on(async {
        let mut l = admin_on(dc).await;
        replace_attrs(&mut l, &ann, &[("userAccountControl", "514")]).await;
        let _ = l.unbind().await;
    });
    wait_for("Ann suspended", &|u| {
        u.get("src-ann")
            .is_some_and(|a| a["user"]["suspended"] == true)
    });

    // Nothing was written to AD: the cloud's own user has no account.
    assert!(
        search(&ou, "(sAMAccountName=src-cloudonly)").is_empty(),
        "a cloud user reached AD with direction = ad-to-cloud"
    );
    let (_, status) = env.status();
    assert_eq!(status["direction"], "ad-to-cloud", "{status}");
    assert!(
        status["export"]["last_success"].as_i64().unwrap_or(0) > 0,
        "{status}"
    );
    assert_eq!(
        status["export"]["error"],
        serde_json::Value::Null,
        "{status}"
    );
    assert_eq!(status["light"], "green", "{status}");
    // The service's heartbeats tell the cloud its last full reconciliation (the first export
    // ran one), which the status page shows per source domain.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let reconciled = loop {
        let store = ad_sync_cloud::server::store::Store::open(&env.cloud.db)
            .unwrap_or_else(|e| panic!("{e}"));
        let view = store.source_overview().unwrap_or_else(|e| panic!("{e:?}"));
        let at = view.first().and_then(|v| v.last_reconcile);
        if at.is_some() || std::time::Instant::now() > deadline {
            break at;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert!(
        reconciled.is_some(),
        "the cloud never heard of the reconciliation"
    );
}

/// The safety net of AD as a source: the full reconciliation (first export, `--resync`) reads
/// the whole scope and compares it with what the cloud holds from AD; users that left go
/// through the deletion threshold as the other direction's disconnections do (held over it,
/// listed and approved with `pending`, allowed with `--allow-deletions`); a full read sends no
/// departure for the thousands of accounts outside the scope that the cloud never had.
#[test]
fn users_leaving_the_scope_go_through_the_threshold_and_the_reconciliation() {
    let _dc = DC.read().unwrap_or_else(|e| e.into_inner());
    let env = Env::new("recon", "direction = \"ad-to-cloud\"\n");
    let dc = &bed().dc1;
    let outside = format!("OU=t-recon-out,{}", testbed::OU_STAFF);
    ldap_add(
        &outside,
        vec![("objectClass", vec!["top", "organizationalUnit"])],
    );
    let dns: Vec<String> = block_on(async {
        let mut l = admin_on(dc).await;
        let mut out = Vec::new();
        for i in 0..12 {
            let dn = testbed::add_user(&mut l, &env.ou, &format!("rc-{i:02}"), "512")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            // The cloud needs a given name and a surname.
            replace_attrs(
                &mut l,
                &dn,
                &[("givenName", "Rc"), ("sn", &format!("User{i}"))],
            )
            .await;
            out.push(dn);
        }
        let _ = l.unbind().await;
        out
    });
    let export = |extra: &[&str]| env.export(extra);
    let deleted = || -> Vec<String> {
        let text = env.cloud(&["user", "list", "--source", "ad", "--deleted", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        let mut names: Vec<String> = v["users"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|u| u["name"].as_str().unwrap_or_default().to_string())
            .collect();
        names.sort();
        names
    };

    // The first export: a full read of the scope's container, which is the reconciliation.
    // The domain's other accounts are not read at all: only what the container holds is
    // decided (its one refusal, the agent's sync group, is listed).
    let (code, r, text) = export(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(
        (r["full"].clone(), r["reconciled"].clone()),
        (true.into(), true.into()),
        "{text}"
    );
    assert_eq!(r["created"], 12, "{text}");
    assert_eq!(r["read"], 12, "{text}");
    assert_eq!(r["suspended"], 0, "{text}");
    assert_eq!(r["left_out_count"], 1, "{text}");
    assert!(
        r["left_out"][0][1]
            .as_str()
            .is_some_and(|w| w.contains("sync group")),
        "{text}"
    );

    // Three move out of the scope: 3 suspensions, over the budget for 12 (10 %: 2).
    block_on(async {
        let mut l = admin_on(dc).await;
        for dn in &dns[..3] {
            let rdn = dn.split(',').next().unwrap_or_default().to_string();
            l.modifydn(dn, &rdn, true, Some(&outside))
                .await
                .and_then(|r| r.success())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let _ = l.unbind().await;
    });
    let (code, r, text) = export(&[]);
    assert_eq!(code, Some(3), "held by the threshold: {text}");
    assert_eq!(r["held"], 3, "{text}");
    assert_eq!(r["blocked"]["limit"], 2, "{text}");
    assert!(deleted().is_empty(), "nothing suspended: {text}");
    let (code, list) = env.pending(&["--json"]);
    assert_eq!(code, Some(3), "{list}");
    let listed: serde_json::Value =
        serde_json::from_str(&list).unwrap_or_else(|e| panic!("{e}: {list}"));
    let held: Vec<(String, String)> = listed["held"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|h| {
            (
                h["id"].as_str().unwrap_or_default().to_string(),
                h["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(held.len(), 3, "{list}");
    assert!(
        listed["held"].as_array().is_some_and(|h| h
            .iter()
            .all(|h| h["kind"] == "ad_user" && h["action"] == "suspend")),
        "{list}"
    );

    // One approved by its id: sent at once; the other two stay held.
    let (code, text) = env.pending(&["--approve", &held[0].0]);
    assert_eq!(code, Some(3), "two still held: {text}");
    assert_eq!(deleted(), [held[0].1.clone()], "{text}");

    // One more deleted in AD; the reconciliation finds every user that left, and this run's
    // allowance lets them all go.
    block_on(async {
        let mut l = admin_on(dc).await;
        l.delete(&dns[11])
            .await
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = l.unbind().await;
    });
    let (code, r, text) = export(&["--resync", "--allow-deletions", "10"]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(r["reconciled"], true, "{text}");
    assert_eq!(r["read"], 8, "{text}");
    assert_eq!(deleted(), ["rc-00", "rc-01", "rc-02", "rc-11"], "{text}");
    let (code, list) = env.pending(&[]);
    assert_eq!(code, Some(0), "nothing held any more: {list}");

    // rc-11 brought back from AD's tombstone (as the Recycle Bin or ADRestore do: the same
    // objectGUID, back under its container): the cloud's suspended user is restored.
    reanimate(dc, "rc-11", &dns[11]);
    // A tombstone keeps few attributes (without AD's Recycle Bin, givenName and sn are gone):
    // the cloud refuses the user as it is, says why, and keeps it suspended.
    let (code, r, text) = export(&["--resync"]);
    assert_eq!(code, Some(4), "{text}");
    assert!(
        r["refused"][0][1]
            .as_str()
            .is_some_and(|w| w.contains("it has no givenName")),
        "{text}"
    );
    assert!(deleted().contains(&"rc-11".to_string()), "{text}");
    // The administrator sets them again, as after any tombstone reanimation: restored.
    block_on(async {
        let mut l = admin_on(dc).await;
        replace_attrs(&mut l, &dns[11], &[("givenName", "Rc"), ("sn", "User11")]).await;
        let _ = l.unbind().await;
    });
    let (code, r, text) = export(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(r["restored"], 1, "{text}");
    assert_eq!(deleted(), ["rc-00", "rc-01", "rc-02"], "{text}");
}

/// Forest to forest through the cloud (ad-user-sync's job, without files): one agent exports
/// `example.com`'s container to the cloud (`ad-to-cloud`), the cloud mirrors that domain
/// instance into `fabrikam.test`'s, and `fabrikam.test`'s own agent (`cloud-to-ad`, a second
/// Samba forest) writes it into its AD under its own policies. A user and its group created in
/// A arrive in B (disabled until B gives the user a password: passwords are not part of it),
/// a rename in A renames the same account in B, and a user moved out of A's scope is disabled
/// in B (B's user disconnection policy). The copies are read-only in B's cloud, and nothing
/// comes back to A.
#[test]
fn a_user_from_one_forest_reaches_another_through_the_cloud() {
    use support::testbed::fabrikam;
    let _dc = DC.read().unwrap_or_else(|e| e.into_inner());
    let env = Env::new("f2f", "direction = \"ad-to-cloud\"\n");
    let a = &bed().dc1;
    let b = &support::forest2().dc;

    // B: a container and a sync group in the second forest, and its agent.
    let b_ou = format!("OU=t-f2f,{}", fabrikam::OU_STAFF);
    let b_group = format!("CN=Sync f2f,{b_ou}");
    block_on(async {
        let mut l = admin_on(b).await;
        l.add(
            &b_ou,
            vec![("objectClass", HashSet::from(["top", "organizationalUnit"]))],
        )
        .await
        .and_then(|r| r.success())
        .unwrap_or_else(|e| panic!("add {b_ou}: {e}"));
        testbed::add_group(&mut l, &b_group, "sync-f2f", "-2147483646")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = l.unbind().await;
    });
    env.cloud(&["domain", "add", fabrikam::BASE]);
    let mut spec = Spec::good();
    spec.dc_host = Some(fabrikam::HOST.into());
    spec.ca_file = Some(b.ca_file.clone());
    spec.username = format!("{}\\{}", fabrikam::NETBIOS, testbed::accounts::GOOD);
    let b_config = install_with(
        &env.cloud,
        &env.dir.join("b"),
        spec,
        fabrikam::BASE,
        &b_ou,
        &b_group,
        "",
    );
    let run_b = || {
        let out = agent(&b_config, &[]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "B's agent: {text}");
        text
    };
    let in_b = |sam: &str| {
        search_on(b, &b_ou, &format!("(sAMAccountName={sam})"))
            .into_iter()
            .next()
    };
    let mirrored = env.cloud(&[
        "domain",
        "mirror",
        "--from",
        DOMAIN,
        "--into",
        fabrikam::BASE,
    ]);
    assert!(
        mirrored.contains("passwords are not part of it"),
        "{mirrored}"
    );

    // A: a user and a group with it, exported to the cloud.
    let crew = format!("CN=x-crew,{}", env.ou);
    let fern = block_on(async {
        let mut l = admin_on(a).await;
        let fern = testbed::add_user(&mut l, &env.ou, "x-fern", "512")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        replace_attrs(&mut l, &fern, &[("givenName", "Fern"), ("sn", "Oak")]).await;
        testbed::add_group(&mut l, &crew, "x-crew", "-2147483646")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        testbed::add_member(&mut l, &crew, &fern)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = l.unbind().await;
        fern
    });
    let (code, report, text) = env.export(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(report["created"], 2, "{text}");
    // Where its time went, by phase (the bench reads these).
    for phase in [
        "heartbeat_ms",
        "connect_ms",
        "account_ms",
        "cursor_ms",
        "changes_ms",
        "reconcile_ms",
    ] {
        assert!(report["took"][phase].is_u64(), "{phase}: {text}");
    }

    // B: the user and the group arrive; the user is disabled until B gives it a password.
    run_b();
    let e = in_b("x-fern").unwrap_or_else(|| panic!("x-fern did not reach B"));
    assert_eq!(attr(&e, "givenName").as_deref(), Some("Fern"));
    assert_eq!(attr(&e, "sn").as_deref(), Some("Oak"));
    assert_ne!(uac(&e) & 2, 0, "no password yet: disabled");
    let guid_in_b = guid_of(&e);
    assert_eq!(members_of_on(b, &b_ou, "x-crew"), ["x-fern"]);
    // Read-only in B's cloud, except its password, which is B's own.
    let out = env.cloud.admin(&[
        "user",
        "rename",
        "x-fern",
        "x-other",
        "--domain",
        fabrikam::BASE,
    ]);
    let refused = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && refused.contains("mirrored from the domain"),
        "{refused}"
    );
    let pw = env.dir.join("pw-b.txt");
    std::fs::write(&pw, USER_PASSWORD).unwrap_or_else(|e| panic!("{e}"));
    env.cloud(&[
        "user",
        "set-password",
        "x-fern",
        "--domain",
        fabrikam::BASE,
        "--password-file",
        &pw.display().to_string(),
    ]);
    run_b();
    let e = in_b("x-fern").unwrap_or_else(|| panic!("x-fern"));
    assert_eq!(uac(&e) & 2, 0, "enabled once B gave it a password");

    // A renames the user: the same account in B is renamed.
    block_on(async {
        let mut l = admin_on(a).await;
        replace_attrs(&mut l, &fern, &[("sAMAccountName", "x-fern2")]).await;
        let _ = l.unbind().await;
    });
    let (code, report, text) = env.export(&[]);
    assert_eq!(
        (code, report["updated"].as_u64()),
        (Some(0), Some(1)),
        "{text}"
    );
    run_b();
    let e = in_b("x-fern2").unwrap_or_else(|| panic!("the rename did not reach B"));
    assert_eq!(guid_of(&e), guid_in_b, "the same account, renamed");
    assert!(in_b("x-fern").is_none());

    // A moves the user out of its scope: B disables it (its user disconnection policy).
    block_on(async {
        let mut l = admin_on(a).await;
        l.modifydn(&fern, "CN=x-fern", true, Some(testbed::OU_STAFF))
            .await
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = l.unbind().await;
    });
    let (code, report, text) = env.export(&[]);
    assert_eq!(
        (code, report["suspended"].as_u64()),
        (Some(0), Some(1)),
        "{text}"
    );
    run_b();
    let e = in_b("x-fern2").unwrap_or_else(|| panic!("B's policy is disable, not remove"));
    assert_ne!(uac(&e) & 2, 0, "disabled in B");
    let listed = env.cloud(&["domain", "mirrors"]);
    assert!(listed.contains("0 users, 1 groups"), "{listed}");

    // Nothing came back to A: its own cloud → AD run has nothing to do.
    let out = env.run(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("x-fern"));
    block_on(async {
        let mut l = admin_on(a).await;
        let _ = l.delete(&format!("CN=x-fern,{}", testbed::OU_STAFF)).await;
        let _ = l.unbind().await;
    });
}

fn members_of_on(dc: &testbed::Dc, base: &str, sam: &str) -> Vec<String> {
    let g = search_on(dc, base, &format!("(sAMAccountName={sam})"))
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{sam}"));
    let mut v: Vec<String> = g
        .attrs
        .get("member")
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|m| {
            m.split(',')
                .next()
                .map(|c| c.trim_start_matches("CN=").to_string())
        })
        .collect();
    v.sort();
    v
}

/// AD as a source read by `uSNChanged` (`[source] change_detection = "usn"`, what the export
/// falls back to where the DC refuses DirSync): the first read sends the scope, later ones only
/// what changed since the cloud's watermark: an attribute, a rename, a new member of a group
/// (its whole list), a user moved out of the scope. The cloud's cursor is the reader's own
/// (`usn1:`), and the status says how changes are read.
#[test]
fn the_export_reads_by_usnchanged_when_asked_and_sees_each_change() {
    let _dc = DC.read().unwrap_or_else(|e| e.into_inner());
    let env = Env::new(
        "usn",
        "direction = \"ad-to-cloud\"\n[source]\nchange_detection = \"usn\"\n",
    );
    let dc = &bed().dc1;
    let group = format!("CN=x-usg,{}", env.ou);
    let uma = block_on(async {
        let mut l = admin_on(dc).await;
        let uma = testbed::add_user(&mut l, &env.ou, "x-uma", "512")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        replace_attrs(&mut l, &uma, &[("givenName", "Uma"), ("sn", "Ray")]).await;
        testbed::add_group(&mut l, &group, "x-usg", "-2147483646")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        testbed::add_member(&mut l, &group, &uma)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = l.unbind().await;
        uma
    });
    let (code, report, text) = env.export(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(
        (&report["reader"], &report["full"], &report["created"]),
        (
            &serde_json::json!("usn"),
            &serde_json::json!(true),
            &serde_json::json!(2)
        ),
        "{text}"
    );
    let members = |name: &str| -> Vec<String> {
        let text = env.cloud(&["group", "list", "--source", "ad", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        let mut m: Vec<String> = v["groups"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .find(|g| g["name"] == name)
            .map(|g| g["members"].as_array().cloned().unwrap_or_default())
            .unwrap_or_default()
            .iter()
            .filter_map(|m| m.as_str().map(str::to_string))
            .collect();
        m.sort();
        m
    };
    assert_eq!(members("x-usg"), ["x-uma"]);

    // A title and a rename, and a new user joins the group.
    let ulf = block_on(async {
        let mut l = admin_on(dc).await;
        replace_attrs(
            &mut l,
            &uma,
            &[("title", "Lead"), ("sAMAccountName", "x-uma2")],
        )
        .await;
        let ulf = testbed::add_user(&mut l, &env.ou, "x-ulf", "512")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        replace_attrs(&mut l, &ulf, &[("givenName", "Ulf"), ("sn", "Berg")]).await;
        testbed::add_member(&mut l, &group, &ulf)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = l.unbind().await;
        ulf
    });
    let (code, report, text) = env.export(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(report["full"], false, "{text}");
    assert_eq!(report["created"], 1, "{text}");
    assert_eq!(
        report["updated"], 2,
        "the renamed user and the group: {text}"
    );
    let users = env.users_from_ad();
    assert_eq!(users["x-uma2"]["attributes"]["title"], "Lead");
    assert_eq!(members("x-usg"), ["x-ulf", "x-uma2"]);

    // Moved out of the scope: seen where it went, and suspended.
    block_on(async {
        let mut l = admin_on(dc).await;
        l.modifydn(&ulf, "CN=x-ulf", true, Some(testbed::OU_UNDELEGATED))
            .await
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = l.unbind().await;
    });
    let (code, report, text) = env.export(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(report["suspended"], 1, "{text}");
    assert_eq!(report["reader"], "usn", "{text}");

    // Nothing in the scope changed: nothing is created or updated.
    let (code, report, text) = env.export(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(
        (&report["created"], &report["updated"]),
        (&serde_json::json!(0), &serde_json::json!(0)),
        "{text}"
    );
    let (_, status) = env.status();
    assert_eq!(status["export"]["reader"], "usn", "{status}");

    // A full reconciliation asked for (what the wizard's review mode asks): the next export
    // runs it without --resync, and the request is answered once.
    let state_dir = env.base().join("var/lib/ad-sync");
    let out = Command::new(agent_bin())
        .args(["resync", "--config"])
        .arg(&env.config)
        .arg("--state-dir")
        .arg(&state_dir)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(state_dir.join("resync.request").is_file());
    let (code, report, text) = env.export(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(report["reconciled"], true, "{text}");
    assert!(!state_dir.join("resync.request").exists());
    let (_, report, text) = env.export(&[]);
    assert_eq!(report["reconciled"], false, "asked once, run once: {text}");
    // The wizard's review mode asks the same with its button.
    review_click(
        &env,
        "Reconcile now",
        "A full reconciliation of AD with the cloud is requested",
    );
    assert!(state_dir.join("resync.request").is_file());
    let (_, report, text) = env.export(&[]);
    assert_eq!(report["reconciled"], true, "{text}");
    block_on(async {
        let mut l = admin_on(dc).await;
        let _ = l
            .delete(&format!("CN=x-ulf,{}", testbed::OU_UNDELEGATED))
            .await;
        let _ = l.unbind().await;
    });
}

/// AD as a source, contacts: an AD contact in the scope reaches the cloud matched on its
/// address, with the map's contact rows; a change follows; a second contact with the same
/// address is refused by name (the export says so); moved out of the scope, it is marked
/// deleted and kept.
#[test]
fn contacts_reach_the_cloud_from_ad_matched_on_their_address() {
    let _dc = DC.read().unwrap_or_else(|e| e.into_inner());
    let env = Env::new("xcontacts", "direction = \"ad-to-cloud\"\n");
    let dc = &bed().dc1;
    let add_contact = |cn: &str, mail: &str, display: &str| -> String {
        let dn = format!("CN={cn},{}", env.ou);
        ldap_add(
            &dn,
            vec![
                (
                    "objectClass",
                    vec!["top", "person", "organizationalPerson", "contact"],
                ),
                ("mail", vec![mail]),
                ("displayName", vec![display]),
                ("givenName", vec!["Pat"]),
                ("sn", vec!["Partner"]),
                ("company", vec!["Fabrikam"]),
            ],
        );
        dn
    };
    let pat = add_contact("Pat Partner", "pat@partner.example", "Pat Partner");
    let contacts = |deleted: bool| -> Vec<serde_json::Value> {
        let mut args = vec!["contact", "list", "--json"];
        if deleted {
            args.push("--deleted");
        }
        let v: serde_json::Value =
            serde_json::from_str(&env.cloud(&args)).unwrap_or_else(|e| panic!("{e}"));
        v["contacts"].as_array().cloned().unwrap_or_default()
    };
    let (code, report, text) = env.export(&[]);
    assert_eq!(code, Some(0), "{text}");
    let listed = contacts(false);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["mail"], "pat@partner.example");
    assert_eq!(listed[0]["fields"]["company"], "Fabrikam");
    assert_eq!(listed[0]["fields"]["display_name"], "Pat Partner");
    assert!(report["created"].as_u64().unwrap_or(0) >= 1, "{text}");

    // A change follows; a second contact with the same address is refused by name.
    block_on(async {
        let mut l = admin_on(dc).await;
        replace_attrs(&mut l, &pat, &[("displayName", "Pat P. Partner")]).await;
        let _ = l.unbind().await;
    });
    add_contact("Pat Again", "PAT@partner.example", "Pat Again");
    let (code, report, text) = env.export(&[]);
    assert_eq!(code, Some(4), "done, with a refusal: {text}");
    assert_eq!(report["updated"], 1, "{text}");
    let refused = report["refused"].to_string();
    assert!(
        refused.contains("another AD contact of this domain has the e-mail address"),
        "{text}"
    );
    assert_eq!(
        contacts(false)[0]["fields"]["display_name"],
        "Pat P. Partner"
    );

    // Moved out of the scope: marked deleted and kept.
    block_on(async {
        let mut l = admin_on(dc).await;
        l.modifydn(&pat, "CN=Pat Partner", true, Some(testbed::OU_UNDELEGATED))
            .await
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = l.unbind().await;
    });
    let (code, report, text) = env.export(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(report["suspended"], 1, "{text}");
    assert_eq!(contacts(true).len(), 1);
    block_on(async {
        let mut l = admin_on(dc).await;
        let _ = l
            .delete(&format!("CN=Pat Partner,{}", testbed::OU_UNDELEGATED))
            .await;
        let _ = l.unbind().await;
    });
}

/// Windows sends a large group's `member` in ranges (1,500 values a range past MaxValRange);
/// the agent reads the rest a range at a time until AD says the last (`member;range=N-*`).
/// Samba sends ranges only when asked for them, so the loop runs against it two values a range:
/// every member comes, once.
#[test]
fn a_group_answered_in_ranges_is_read_whole() {
    use ad_sync::directory::object::{member_values, read_base, rest_of_members};
    let _dc = DC.read();
    let ou = format!("OU=t-ranges,{}", testbed::OU_STAFF);
    ldap_add(
        &ou,
        vec![("objectClass", vec!["top", "organizationalUnit"])],
    );
    let members: Vec<String> = (0..5)
        .map(|i| seed_user(&ou, &format!("rng{i}"), None, None, "512"))
        .collect();
    let group = format!("CN=Ranged,{ou}");
    seed_group(
        &group,
        "rng-group",
        "-2147483646",
        &members.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let timeout = std::time::Duration::from_secs(10);
    let (first, values) = block_on(async {
        let ldap = admin_on(&bed().dc1).await;
        let first = read_base(&ldap, timeout, &group, &["member;range=0-1"])
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|e| member_values(&e))
            .unwrap_or_else(|| panic!("{group} not found"));
        let all = rest_of_members(&ldap, timeout, &group, 0, 2)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        (first, all)
    });
    assert_eq!((first.0.len(), first.1), (2, Some(2)), "{first:?}");
    let mut names: Vec<String> = values
        .iter()
        .filter_map(|v| v.rsplit(">;").next())
        .map(|dn| dn.to_ascii_lowercase())
        .collect();
    names.sort();
    let mut want: Vec<String> = members.iter().map(|m| m.to_ascii_lowercase()).collect();
    want.sort();
    assert_eq!(names, want);
}

/// The service gives memory back while it waits for its next step (`idle`: the heap's free
/// pages, and the pages of its code and libraries, dropped from its mappings), and its next
/// step runs that code again from the files: with heartbeats 16 s apart, the service gives back
/// in the first wait, then creates the user added meanwhile, and is still running. On Linux the
/// resident file pages are lower after the give-back than during the first step's wait before it.
#[test]
fn the_service_gives_memory_back_while_it_waits_and_goes_on_syncing() {
    let _dc = DC.read().unwrap_or_else(|e| e.into_inner());
    let tag = "idle";
    let env = Env::with_cloud(
        tag,
        "",
        CloudServer::start(
            tag,
            &["--heartbeat-interval", "16s", "--primary-timeout", "40s"],
        ),
    );
    env.add_user("idle-ann");
    let log_dir = env.base().join("var/log/ad-sync");
    let mut service = Service::start(&env, "info,ad_sync_agent::idle=debug");
    let pid = service.0.id();
    let rss_file_kib = || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("RssFile:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let log = || {
        std::fs::read_dir(&log_dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect::<String>()
    };
    let wait_until = |what: &str, secs: u64, ok: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while !ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "{what} within {secs} s; the agent's log:\n{}",
                log()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    wait_until("the first step creates idle-ann", 60, &|| {
        user_in(&env, "idle-ann").is_some()
    });
    let before = rss_file_kib();
    wait_until("memory given back in the first wait", 30, &|| {
        log().contains("memory given back before waiting")
    });
    let after = rss_file_kib();
    assert!(
        after < before,
        "resident file pages: {before} KiB in the wait before the give-back, {after} KiB after"
    );
    env.add_user("idle-bob");
    wait_until("the next step creates idle-bob", 60, &|| {
        user_in(&env, "idle-bob").is_some()
    });
    assert!(
        service.0.try_wait().ok().flatten().is_none(),
        "the service ended; its log:\n{}",
        log()
    );
    let log = log();
    assert!(!log.contains("panicked"), "{log}");
}
