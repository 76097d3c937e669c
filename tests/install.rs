//! The install step end to end: `ad-sync-setup install --answers F --prefix DIR --no-start`
//! against the real Samba DC and the real `ad-sync-cloud`, then the agent it installed, upgrade,
//! rollback, a SIGKILL after every step, the secrets grep, and uninstall.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::cloud::{CloudServer, shared};
use support::{Spec, testbed};

const SETUP: &str = env!("CARGO_BIN_EXE_ad-sync-setup");
const AGENT: &str = env!("CARGO_BIN_EXE_ad-sync-agent");
const DOMAIN: &str = "DC=example,DC=com";

fn fresh_dir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("install-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// An answers file for the shared cloud with a fresh key (or none).
fn spec(cloud: &CloudServer, key: Option<String>) -> Spec {
    let mut s = Spec::good();
    s.cloud_url = Some(cloud.url.clone());
    s.cloud_ca = Some(cloud.ca.clone());
    s.connect_key = key;
    s
}

fn with_policy(answers: &Path, line: &str) {
    let text = std::fs::read_to_string(answers).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(answers, format!("{text}\n[sync]\n{line}\n")).unwrap_or_else(|e| panic!("{e}"));
}

fn install(answers: &Path, prefix: &Path, extra: &[&str]) -> (Output, Value) {
    let mut args = vec![
        "install".to_string(),
        "--answers".into(),
        answers.display().to_string(),
        "--prefix".into(),
        prefix.display().to_string(),
        "--no-start".into(),
        "--json".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = Command::new(SETUP)
        .args(&args)
        .env("AD_SYNC_LOG", "trace")
        .output()
        .unwrap_or_else(|e| panic!("run install: {e}"));
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "install printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, json)
}

fn config_of(prefix: &Path) -> PathBuf {
    prefix.join("etc/ad-sync/agent.toml")
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn agents(cloud: &CloudServer) -> String {
    cloud.admin_ok(&["agents"])
}

fn key_state(cloud: &CloudServer, key: &str) -> String {
    let k = ad_sync::connect_key::ConnectKey::parse(key).unwrap_or_else(|e| panic!("{e}"));
    let r = support::cloud::block_on(cloud.client().check_key(&k, None))
        .unwrap_or_else(|e| panic!("{e}"));
    format!("{:?}", r.state)
}

fn agent_once(prefix: &Path) -> Output {
    Command::new(AGENT)
        .args(["run", "--once", "--config"])
        .arg(config_of(prefix))
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap_or_else(|e| panic!("run agent: {e}"))
}

/// Every file under `dir`, recursively (symlinks listed, not followed).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(p),
                Ok(_) => out.push(p),
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

fn step_ids(json: &Value) -> Vec<String> {
    json["plan"]["steps"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_fresh_install_runs_the_agent_upgrades_in_place_and_uninstalls() {
    let cloud = shared();
    let key = cloud.issue_key(DOMAIN, None);
    let answers = spec(cloud, Some(key.clone())).write();
    let prefix = fresh_dir("fresh");

    let (out, json) = install(&answers, &prefix, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{json:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json["result"], "installed");
    assert_eq!(json["plan"]["mode"], "fresh");
    let agent_id = json["agent_id"].as_str().unwrap_or_default().to_string();
    assert!(agent_id.starts_with("agt-"), "{json:#}");
    assert!(
        json["steps"]
            .as_array()
            .is_some_and(|s| s.iter().all(|s| s["status"] == "done")),
        "{json:#}"
    );
    assert_eq!(
        json["agent"]["agent_id"],
        agent_id.as_str(),
        "the cloud's view: {json:#}"
    );
    assert_eq!(key_state(cloud, &key), "Used");

    // Files, modes, the store, the unit, the enable link, the program.
    let config = config_of(&prefix);
    assert_eq!(mode(&config), 0o600);
    let text = std::fs::read_to_string(&config).unwrap_or_default();
    assert!(
        !text.contains("password_")
            && !text.contains("password =")
            && !text.contains("connect_key"),
        "{text}"
    );
    assert!(
        text.contains("ca_file = \"dc-ca.pem\""),
        "CA copied beside the config: {text}"
    );
    assert_eq!(mode(&prefix.join("etc/ad-sync/dc-ca.pem")), 0o644);
    let secrets = prefix.join("etc/ad-sync/secrets");
    assert_eq!(mode(&secrets), 0o700);
    for name in ad_sync::secrets::ALL {
        assert_eq!(mode(&secrets.join(name)), 0o600, "{name}");
    }
    let unit = prefix.join("etc/systemd/system/ad-sync-agent.service");
    assert!(unit.is_file());
    let link = prefix.join("etc/systemd/system/multi-user.target.wants/ad-sync-agent.service");
    assert!(
        link.symlink_metadata().is_ok(),
        "systemctl --root enable made the link"
    );
    assert!(prefix.join("opt/ad-sync/ad-sync-agent").is_file());
    assert_eq!(mode(&prefix.join("opt/ad-sync/ad-sync-agent")), 0o755);
    let rec =
        std::fs::read_to_string(prefix.join("etc/ad-sync/enrollment.toml")).unwrap_or_default();
    assert!(
        rec.contains("state = \"enrolled\"") && rec.contains(&agent_id),
        "{rec}"
    );

    // The agent it installed starts from that config and store and checks in.
    let run = agent_once(&prefix);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        String::from_utf8_lossy(&run.stdout).contains("primary")
            || String::from_utf8_lossy(&run.stdout).contains("standby")
    );

    // `review` shows the settings and where the secrets are, never a secret.
    let review = Command::new(SETUP)
        .args(["--config", "/etc/ad-sync/agent.toml", "review", "--prefix"])
        .arg(&prefix)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let shown = String::from_utf8_lossy(&review.stdout);
    assert!(review.status.success(), "{shown}");
    assert!(
        shown.contains(&agent_id) && shown.contains("agent-credential: stored"),
        "{shown}"
    );
    assert!(
        !shown.contains(testbed::SVC_PASSWORD) && !shown.contains(&key),
        "{shown}"
    );

    // Upgrade: no key, another policy; same agent, config backed up, one unit.
    let upgrade = spec(cloud, None).write();
    with_policy(&upgrade, "user_disconnection_action = \"remove\"");
    let (out, json) = install(&upgrade, &prefix, &[]);
    assert_eq!(out.status.code(), Some(0), "{json:#}");
    assert_eq!(json["plan"]["mode"], "upgrade");
    assert_eq!(json["agent_id"], agent_id.as_str());
    assert!(!step_ids(&json).contains(&"enroll".to_string()));
    let text = std::fs::read_to_string(&config).unwrap_or_default();
    assert!(
        text.contains("user_disconnection_action = \"remove\""),
        "{text}"
    );
    let backups: Vec<_> = files(&prefix.join("etc/ad-sync"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".bak"))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(mode(&backups[0]), 0o600);
    let units = files(&prefix.join("etc/systemd")).len();
    assert_eq!(units, 2, "the unit and its enable link, no second service");
    assert!(agent_once(&prefix).status.success());

    // Upgrade with another service account: refused, nothing changes.
    let before = std::fs::read(&config).unwrap_or_default();
    let other = spec(cloud, None).user(testbed::accounts::EXPIRING).write();
    let (out, json) = install(&other, &prefix, &[]);
    assert_eq!(out.status.code(), Some(1), "{json:#}");
    let failed: Vec<_> = json["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"] == "fail")
        .collect();
    assert!(
        failed.iter().any(|c| c["id"] == "account.unchanged"),
        "{failed:?}"
    );
    assert_eq!(std::fs::read(&config).unwrap_or_default(), before);

    // Uninstall: the cloud is told, the service and secrets go, the config stays when asked.
    let out = Command::new(SETUP)
        .args([
            "--config",
            "/etc/ad-sync/agent.toml",
            "uninstall",
            "--keep-config",
            "--prefix",
        ])
        .arg(&prefix)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(config.is_file(), "--keep-config");
    assert!(!unit.exists() && link.symlink_metadata().is_err());
    assert!(!secrets.exists(), "{:?}", files(&prefix));
    assert!(!prefix.join("opt/ad-sync/ad-sync-agent").exists());
    let listed = agents(cloud);
    let line = listed
        .lines()
        .find(|l| l.contains(&agent_id))
        .unwrap_or_default();
    assert!(line.contains("deregistered"), "{listed}");
    // And fully.
    let out = Command::new(SETUP)
        .args([
            "--config",
            "/etc/ad-sync/agent.toml",
            "uninstall",
            "--prefix",
        ])
        .arg(&prefix)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(files(&prefix).is_empty(), "{:?}", files(&prefix));
}
