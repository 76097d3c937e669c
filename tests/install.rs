//! The install step end to end: `ad-sync-setup install --answers F --prefix DIR --no-start`
//! against the real Samba DC and the real `ad-sync-cloud`, then the agent it installed, upgrade,
//! rollback, a SIGKILL after every step, the secrets grep, and uninstall.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::cloud::{CloudServer, shared};
use support::{Spec, testbed};

/// The installer, with the agent it installs built beside it.
fn setup_bin() -> &'static str {
    support::bins::setup_with_agent()
}
fn agent_bin() -> &'static str {
    support::bins::agent()
}
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
    let out = Command::new(setup_bin())
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
    Command::new(agent_bin())
        .args(["run", "--once", "--config"])
        .arg(config_of(prefix))
        // Beside the prefix, so a full uninstall can still be checked to leave it empty.
        .arg("--state-dir")
        .arg(prefix.with_extension("state"))
        .args(["--log-dir", "-"])
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

    // Who may do what, as the plan states it from the unit it writes and the modes it sets
    // (the model is core's install::access_linux); the modes on disk are the stated ones.
    let access = json["plan"]["access"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no access statement: {json:#}"));
    let stated = |end: &str| {
        access
            .iter()
            .find(|r| r["path"].as_str().is_some_and(|p| p.ends_with(end)))
            .cloned()
            .unwrap_or_else(|| panic!("no {end} in {access:#?}"))
    };
    for (end, service, users) in [
        ("/var/lib/ad-sync", "modify", "none"),
        ("/var/log/ad-sync", "modify", "none"),
        ("/etc/ad-sync/secrets", "read", "none"),
        ("/etc/ad-sync/agent.toml", "read", "none"),
    ] {
        let r = stated(end);
        assert_eq!(
            (r["service"].as_str(), r["users"].as_str()),
            (Some(service), Some(users)),
            "{r}"
        );
        assert_eq!(r["administrators"], "full control", "{r}");
    }
    for end in [
        "/etc/ad-sync/secrets",
        "/etc/ad-sync/agent.toml",
        "/etc/ad-sync",
    ] {
        let said = stated(end)["mode"].as_str().unwrap_or_default().to_string();
        let on_disk = format!("{:04o}", mode(&prefix.join(end.trim_start_matches('/'))));
        assert!(
            said.starts_with(&on_disk),
            "{end}: stated {said}, on disk {on_disk}"
        );
    }

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
    // Encrypted at rest where this machine has systemd-creds (Debian 12's systemd 252 here):
    // no file holds a secret in clear, the store still reads each back, and the unit hands them
    // to the service with LoadCredentialEncrypted=.
    let store = ad_sync::secrets::FileStore::new(&secrets);
    let protection = ad_sync::secrets::Protection::detect();
    assert_eq!(
        json["plan"]["protection"].as_str(),
        Some(
            if protection == ad_sync::secrets::Protection::SystemdCreds {
                "systemd-creds"
            } else {
                "file"
            }
        ),
        "{json:#}"
    );
    for name in ad_sync::secrets::ALL {
        let stored = store
            .stored_path(name)
            .unwrap_or_else(|| panic!("{name} is not stored"));
        assert_eq!(mode(&stored), 0o600, "{name}");
        assert_eq!(store.stored_as(name), Some(protection), "{name}");
        let clear = store.read(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let on_disk = std::fs::read(&stored).unwrap_or_default();
        let found = on_disk
            .windows(clear.expose().len())
            .any(|w| w == clear.expose().as_bytes());
        assert_eq!(
            found,
            protection == ad_sync::secrets::Protection::File,
            "{name} in clear on disk only when not encrypted"
        );
    }
    let unit = prefix.join("etc/systemd/system/ad-sync-agent.service");
    assert!(unit.is_file());
    let unit_text = std::fs::read_to_string(&unit).unwrap_or_default();
    assert_eq!(
        unit_text.contains(
            "LoadCredentialEncrypted=service-account-password:/etc/ad-sync/secrets/service-account-password.cred"
        ),
        protection == ad_sync::secrets::Protection::SystemdCreds,
        "{unit_text}"
    );
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
    let review = Command::new(setup_bin())
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

    // The removal, read before it runs: a plan of typed steps in the order they run, what is
    // left in place, and nothing removed.
    let before_dry_run = files(&prefix);
    let out = uninstall(&prefix, &["--keep-config", "--dry-run", "--json"]);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "{plan:#}");
    assert_eq!(plan["result"], "planned");
    let kinds: Vec<&str> = plan["plan"]["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["removal"]["kind"].as_str())
        .collect();
    assert_eq!(kinds.first(), Some(&"deregister"), "{plan:#}");
    assert_eq!(kinds.get(1), Some(&"service_unit"), "{plan:#}");
    assert!(
        kinds.contains(&"secret") && kinds.contains(&"state") && !kinds.contains(&"config"),
        "{plan:#}"
    );
    assert!(
        plan["plan"]["kept"].as_array().is_some_and(|k| k
            .iter()
            .any(|k| k.as_str().is_some_and(|k| k.contains("--keep-config")))),
        "{plan:#}"
    );
    assert_eq!(plan["plan"]["agent_id"], agent_id.as_str());
    assert_eq!(files(&prefix), before_dry_run, "a dry run removes nothing");
    assert!(
        agents(cloud)
            .lines()
            .any(|l| l.contains(&agent_id) && !l.contains("deregistered"))
    );

    // Uninstall: the cloud is told, the service and secrets go, the config stays when asked.
    let out = uninstall(&prefix, &["--keep-config"]);
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
    let out = uninstall(&prefix, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Nothing is left but the setup log, which says what each run did.
    assert_eq!(files(&prefix), vec![setup_log(&prefix)]);
    let log = std::fs::read_to_string(setup_log(&prefix)).unwrap_or_default();
    assert!(
        log.contains("install --answers") && log.contains("result: installed"),
        "{log}"
    );
    assert!(
        log.lines().last() == Some("  result: uninstalled"),
        "the uninstall is recorded last: {log}"
    );
}

/// `ad-sync-setup uninstall --prefix PREFIX` with `extra` arguments, for the staged install.
fn uninstall(prefix: &Path, extra: &[&str]) -> Output {
    Command::new(setup_bin())
        .args(["--config", "/etc/ad-sync/agent.toml", "uninstall"])
        .args(extra)
        .arg("--prefix")
        .arg(prefix)
        .output()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The setup log of an install staged under `prefix`.
fn setup_log(prefix: &Path) -> PathBuf {
    prefix.join("var/log/ad-sync/setup.log")
}

/// Starts an install that stops itself at `point` (AD_SYNC_INSTALL_FAULT), waits until it has,
/// and kills it there with SIGKILL. Returns false when the point was never reached (the install
/// finished first).
fn install_killed_at(answers: &Path, prefix: &Path, point: &str) -> bool {
    let mut child = Command::new(setup_bin())
        .args(["install", "--no-start", "--json", "--answers"])
        .arg(answers)
        .arg("--prefix")
        .arg(prefix)
        .env("AD_SYNC_INSTALL_FAULT", format!("stop-after:{point}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let pid = child.id() as i32;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The state is the field after the ")" that closes the command name.
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        if state == Some("T") {
            // SAFETY: kill(2) on the child this test started.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            let _ = child.wait();
            return true;
        }
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the install never reached {point}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The unit's folder made a file: the unit step fails, after the config and secrets are written.
fn block_the_unit(prefix: &Path) {
    std::fs::create_dir_all(prefix.join("etc/systemd")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(prefix.join("etc/systemd/system"), "in the way")
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Starts an install (`--json` or the CLI's words) that stops itself after `point`, and waits
/// until it has. Returns the child (its output piped) and its pid, for the test to SIGCONT.
fn install_stopped_at(
    answers: &Path,
    prefix: &Path,
    point: &str,
    json: bool,
) -> (std::process::Child, i32) {
    support::spawn_stopped(
        Command::new(setup_bin())
            .args(["install", "--no-start"])
            .args(json.then_some("--json"))
            .arg("--answers")
            .arg(answers)
            .arg("--prefix")
            .arg(prefix)
            .env("AD_SYNC_INSTALL_FAULT", format!("stop-after:{point}")),
    )
}

/// While the installer `pid` is stopped, someone puts a folder holding an admin's file where
/// the file it wrote at `path` is (so removing it can no longer succeed); then it goes on.
fn folder_in_place_of(path: &Path, pid: i32) {
    std::fs::remove_file(path).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir(path).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(path.join("notes.txt"), "an admin's file").unwrap_or_else(|e| panic!("{e}"));
    // SAFETY: kill(2) on the child this test started.
    unsafe {
        libc::kill(pid, libc::SIGCONT);
    }
}

/// No torn file anywhere: no temporary file left, and a config, when there is one, parses whole.
fn assert_not_torn(prefix: &Path, point: &str) {
    for f in files(prefix) {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        assert!(
            !name.ends_with(".tmp"),
            "killed at {point}: temporary file left: {}",
            f.display()
        );
    }
    let config = config_of(prefix);
    if config.exists() {
        let r = ad_sync::install::config::read_installed(&config);
        assert!(r.is_ok(), "killed at {point}: torn config: {:?}", r.err());
    }
}

#[test]
fn killed_after_every_step_a_rerun_finishes_with_one_service_and_one_agent() {
    let cloud = shared();
    // The step ids, from the plan itself (a dry run writes nothing).
    let probe = spec(cloud, Some(cloud.issue_key(DOMAIN, None))).write();
    let (_, json) = install(&probe, &fresh_dir("probe"), &["--dry-run"]);
    let mut points = step_ids(&json);
    assert!(points.len() >= 8, "{json:#}");
    points.insert(
        points.iter().position(|p| p == "enroll").unwrap_or(0),
        "enroll-answered".into(),
    );

    for point in &points {
        let key = cloud.issue_key(DOMAIN, None);
        let answers = spec(cloud, Some(key.clone())).write();
        let prefix = fresh_dir("kill");
        assert!(
            install_killed_at(&answers, &prefix, point),
            "never stopped at {point}"
        );
        assert_not_torn(&prefix, point);
        // Never a consumed key without an agent that can be finished: a re-run with the same
        // answers completes the install, resuming the enrollment when the key was used.
        let (out, json) = install(&answers, &prefix, &[]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "re-run after a kill at {point}: {json:#}"
        );
        assert_eq!(json["result"], "installed", "{point}");
        let agent_id = json["agent_id"].as_str().unwrap_or_default().to_string();
        assert_eq!(key_state(cloud, &key), "Used", "{point}");
        // The key enrolled exactly that agent, and the stored credential works.
        let run = agent_once(&prefix);
        assert!(
            run.status.success(),
            "agent after a kill at {point}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let keys = cloud.admin_ok(&["key", "list"]);
        let hint = &key[key.len() - 4..];
        let line = keys.lines().find(|l| l.contains(hint)).unwrap_or_default();
        assert!(
            line.contains(&agent_id),
            "killed at {point}: the key enrolled {line}, not {agent_id}"
        );
        let units: Vec<_> = files(&prefix.join("etc/systemd/system"));
        assert_eq!(units.len(), 2, "killed at {point}: {units:?}");
        assert_not_torn(&prefix, point);
    }

    // The same during an upgrade: the previous installation intact, or the new one complete.
    let key = cloud.issue_key(DOMAIN, None);
    let answers = spec(cloud, Some(key)).write();
    let prefix = fresh_dir("kill-upgrade");
    let (out, json) = install(&answers, &prefix, &[]);
    assert_eq!(out.status.code(), Some(0), "{json:#}");
    let agent_id = json["agent_id"].as_str().unwrap_or_default().to_string();
    let upgrade = spec(cloud, None).write();
    with_policy(&upgrade, "group_membership_sync_type = \"match\"");
    let (_, plan) = install(&upgrade, &prefix, &["--dry-run"]);
    for point in step_ids(&plan) {
        let before = std::fs::read_to_string(config_of(&prefix)).unwrap_or_default();
        assert!(
            install_killed_at(&upgrade, &prefix, &point),
            "upgrade never stopped at {point}"
        );
        assert_not_torn(&prefix, &point);
        let now = std::fs::read_to_string(config_of(&prefix)).unwrap_or_default();
        assert!(
            now == before || now.contains("group_membership_sync_type = \"match\""),
            "upgrade killed at {point}: {now}"
        );
        let (out, json) = install(&upgrade, &prefix, &[]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "upgrade re-run after {point}: {json:#}"
        );
        assert_eq!(json["agent_id"], agent_id.as_str(), "{point}");
        assert!(agent_once(&prefix).status.success(), "{point}");
    }
}

#[test]
fn a_step_that_fails_before_enrollment_undoes_everything_and_the_key_stays_unused() {
    let cloud = shared();
    let key = cloud.issue_key(DOMAIN, None);
    let answers = spec(cloud, Some(key.clone())).write();
    let prefix = fresh_dir("rollback");
    block_the_unit(&prefix);
    let (out, json) = install(&answers, &prefix, &[]);
    assert_eq!(out.status.code(), Some(3), "{json:#}");
    assert_eq!(json["result"], "rolled_back");
    let statuses: Vec<_> = json["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["id"].as_str().unwrap_or(""),
                s["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(
        statuses.contains(&("config", "rolled_back")),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&("service.unit", "failed")),
        "{statuses:?}"
    );
    assert!(statuses.contains(&("enroll", "not_run")), "{statuses:?}");
    let fix = json["fix"].as_str().unwrap_or_default();
    assert!(!fix.is_empty(), "{json:#}");
    assert_eq!(
        files(&prefix),
        vec![prefix.join("etc/systemd/system"), setup_log(&prefix)],
        "only the blocker is left, and the setup log that says what happened"
    );
    assert_eq!(key_state(cloud, &key), "Valid");
    std::fs::remove_file(setup_log(&prefix)).unwrap_or_else(|e| panic!("{e}"));

    // Enrollment refused (the key used by someone else between the checks and enrollment):
    // everything is undone too, and the previous install, here none, is what remains.
    std::fs::remove_file(prefix.join("etc/systemd/system")).unwrap_or_else(|e| panic!("{e}"));
    let (child, pid) = install_stopped_at(&answers, &prefix, "service.enable", true);
    cloud.use_up(&key, DOMAIN);
    // SAFETY: kill(2) on the child this test started.
    unsafe {
        libc::kill(pid, libc::SIGCONT);
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(out.status.code(), Some(3), "{json:#}");
    assert!(
        json["error"]
            .as_str()
            .unwrap_or("")
            .contains("already used"),
        "{json:#}"
    );
    // Nothing is left but the setup log, which says why (no key in it).
    let left: Vec<_> = files(&prefix);
    assert_eq!(left, vec![setup_log(&prefix)]);
    let log = std::fs::read_to_string(setup_log(&prefix)).unwrap_or_default();
    assert!(
        log.contains("already used") && log.contains("the connect key was not used"),
        "{log}"
    );
    assert!(!log.contains(&key), "{log}");
}

#[test]
fn an_undo_that_fails_is_reported_as_not_undone_with_what_is_left() {
    let cloud = shared();
    let key = cloud.issue_key(DOMAIN, None);
    let answers = spec(cloud, Some(key.clone())).write();
    let prefix = fresh_dir("undo-fails");
    // The unit step will fail (its folder is a file), so everything before it is undone.
    block_the_unit(&prefix);
    let (child, pid) = install_stopped_at(&answers, &prefix, "config", true);
    let config = config_of(&prefix);
    folder_in_place_of(&config, pid);
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(out.status.code(), Some(3), "{json:#}");
    assert_eq!(json["result"], "rolled_back", "{json:#}");
    let step = |id: &str| {
        json["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no step {id}: {json:#}"))
    };
    let config_step = step("config");
    assert_eq!(config_step["status"], "not_undone", "{json:#}");
    let message = config_step["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&config.display().to_string()) && message.contains("delete it"),
        "the message names what is left and what to do: {message}"
    );
    // The steps whose undo worked say so; the one that failed stays failed.
    assert_eq!(step("secret.password")["status"], "rolled_back", "{json:#}");
    assert_eq!(step("service.unit")["status"], "failed", "{json:#}");
    let fix = json["fix"].as_str().unwrap_or_default();
    assert!(
        fix.contains("Not everything could be undone") && fix.contains("agent.toml"),
        "{fix}"
    );
    // The secrets this run wrote are gone; the admin's file is untouched; the key is unused.
    assert!(
        !ad_sync::secrets::FileStore::new(prefix.join("etc/ad-sync/secrets"))
            .has(ad_sync::secrets::SERVICE_ACCOUNT_PASSWORD),
        "{:?}",
        files(&prefix)
    );
    assert_eq!(
        std::fs::read_to_string(config.join("notes.txt"))
            .ok()
            .as_deref(),
        Some("an admin's file")
    );
    assert_eq!(key_state(cloud, &key), "Valid");

    // The same through the CLI's words: the step is marked and the summary does not claim a
    // clean undo.
    std::fs::remove_dir_all(&prefix).unwrap_or_else(|e| panic!("{e}"));
    block_the_unit(&prefix);
    let (child, pid) = install_stopped_at(&answers, &prefix, "config", false);
    folder_in_place_of(&config, pid);
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("NOT UNDONE"), "{text}");
    assert!(!text.contains("Everything it did was undone"), "{text}");
    assert_eq!(key_state(cloud, &key), "Valid");
}

#[test]
fn a_failed_upgrade_puts_the_previous_config_and_secrets_back() {
    let cloud = shared();
    let answers = spec(cloud, Some(cloud.issue_key(DOMAIN, None))).write();
    let prefix = fresh_dir("upgrade-fail");
    let (out, json) = install(&answers, &prefix, &[]);
    assert_eq!(out.status.code(), Some(0), "{json:#}");
    let snapshot: Vec<(PathBuf, Vec<u8>)> = files(&prefix)
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap_or_default();
            (p, b)
        })
        .collect();
    let upgrade = spec(cloud, None).write();
    with_policy(&upgrade, "sync_account_locked_out_status = true");
    // The new unit cannot be written (a folder stands at its path; root ignores permissions),
    // after the config and the password have been replaced.
    let unit = prefix.join("etc/systemd/system/ad-sync-agent.service");
    std::fs::remove_file(&unit).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir(&unit).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(unit.join("blocker"), "x").unwrap_or_else(|e| panic!("{e}"));
    let (out, json) = install(&upgrade, &prefix, &[]);
    assert_eq!(out.status.code(), Some(3), "{json:#}");
    std::fs::remove_dir_all(&unit).unwrap_or_else(|e| panic!("{e}"));
    for (p, bytes) in &snapshot {
        // The setup log records the failed run; it is meant to change.
        if *p == unit || *p == setup_log(&prefix) {
            continue;
        }
        assert_eq!(
            &std::fs::read(p).unwrap_or_default(),
            bytes,
            "{} changed",
            p.display()
        );
    }
    let now: Vec<_> = files(&prefix).into_iter().filter(|p| *p != unit).collect();
    let before: Vec<_> = snapshot
        .iter()
        .map(|(p, _)| p.clone())
        .filter(|p| *p != unit)
        .collect();
    assert_eq!(now, before, "no backup or other file left behind");
}

#[test]
fn no_secret_reaches_a_file_the_unit_a_log_or_a_command_line() {
    let cloud = shared();
    let key = cloud.issue_key(DOMAIN, None);
    let answers = spec(cloud, Some(key.clone())).write();
    let prefix = fresh_dir("grep");
    let (out, json) = install(&answers, &prefix, &[]);
    assert_eq!(out.status.code(), Some(0), "{json:#}");
    // The text run too, for its progress lines.
    let text = Command::new(setup_bin())
        .args(["install", "--no-start", "--answers"])
        .arg(spec(cloud, None).write())
        .arg("--prefix")
        .arg(&prefix)
        .env("AD_SYNC_LOG", "trace")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        text.status.success(),
        "{}",
        String::from_utf8_lossy(&text.stderr)
    );
    let store = ad_sync::secrets::FileStore::new(prefix.join("etc/ad-sync/secrets"));
    let read = |n| {
        store
            .read(n)
            .unwrap_or_else(|e| panic!("{e}"))
            .expose()
            .to_string()
    };
    let secrets = [
        ("password", testbed::SVC_PASSWORD.to_string()),
        ("connect key", key.clone()),
        ("agent credential", read(ad_sync::secrets::AGENT_CREDENTIAL)),
        (
            "agent private key",
            read(ad_sync::secrets::AGENT_PRIVATE_KEY),
        ),
    ];
    let agent = agent_once(&prefix);
    let review = Command::new(setup_bin())
        .args(["review", "--json", "--prefix"])
        .arg(&prefix)
        .args(["--config", "/etc/ad-sync/agent.toml"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut haystacks: Vec<(String, Vec<u8>)> = vec![
        ("install --json stdout".into(), out.stdout.clone()),
        ("install stderr (trace log)".into(), out.stderr.clone()),
        ("install text stdout".into(), text.stdout.clone()),
        ("install text stderr".into(), text.stderr.clone()),
        (
            "recorded command lines".into(),
            json["commands"].to_string().into_bytes(),
        ),
        ("agent output".into(), [agent.stdout, agent.stderr].concat()),
        ("review".into(), [review.stdout, review.stderr].concat()),
        ("cloud log".into(), cloud.log().into_bytes()),
    ];
    for f in files(&prefix) {
        if f.starts_with(prefix.join("etc/ad-sync/secrets")) || f.is_symlink() {
            continue;
        }
        haystacks.push((
            f.display().to_string(),
            std::fs::read(&f).unwrap_or_default(),
        ));
    }
    assert!(
        haystacks
            .iter()
            .any(|(n, _)| n.ends_with("ad-sync-agent.service"))
    );
    assert!(haystacks.iter().any(|(n, _)| n.ends_with("agent.toml")));
    assert!(
        haystacks
            .iter()
            .any(|(n, h)| n.ends_with("setup.log") && !h.is_empty()),
        "the setup log is scanned too"
    );
    for (what, secret) in &secrets {
        assert!(secret.len() >= 8, "{what} is too short to grep for");
        for (name, hay) in &haystacks {
            let found = hay.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "the {what} appears in {name}");
        }
    }
}

#[test]
fn without_systemd_the_install_asks_for_no_start_and_the_unit_verifies_hardened() {
    // This machine runs no systemd: without --no-start (and without --prefix) the check says so.
    let cloud = shared();
    let answers = spec(cloud, Some(cloud.issue_key(DOMAIN, None))).write();
    let out = Command::new(setup_bin())
        .args(["--config"])
        .arg(fresh_dir("nosystemd").join("agent.toml"))
        .args(["install", "--dry-run", "--json", "--answers"])
        .arg(&answers)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    if ad_sync::install::service::systemd_running() {
        eprintln!("systemd runs here: the no-systemd refusal is not exercised");
    } else {
        assert_eq!(out.status.code(), Some(1), "{json:#}");
        let c = json["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["id"] == "install.service_manager")
            .cloned()
            .unwrap_or_default();
        assert_eq!(c["status"], "fail", "{json:#}");
        assert!(
            c["fix"].as_str().unwrap_or("").contains("--no-start"),
            "{c}"
        );
    }

    // The unit the installer writes passes systemd's own checks, pointed at the real program.
    let dir = fresh_dir("unit");
    let bin_dir = Path::new(agent_bin()).parent().unwrap_or(Path::new("."));
    let layout =
        ad_sync::install::layout::Layout::new(Path::new("/etc/ad-sync/agent.toml"), bin_dir, None);
    let unit = dir.join("ad-sync-agent.service");
    // Both forms: secrets in clear 0600 files (LoadCredential=) and encrypted by systemd-creds
    // (LoadCredentialEncrypted=).
    for protection in [
        ad_sync::secrets::Protection::File,
        ad_sync::secrets::Protection::SystemdCreds,
    ] {
        let text =
            ad_sync::install::service::systemd_unit(&layout, &["dc", "cloud"], &[], protection);
        assert_eq!(
            text.contains("LoadCredentialEncrypted="),
            protection == ad_sync::secrets::Protection::SystemdCreds,
            "{text}"
        );
        std::fs::write(&unit, text).unwrap_or_else(|e| panic!("{e}"));
        let verify = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .output()
            .unwrap_or_else(|e| panic!("systemd-analyze: {e}"));
        assert!(
            verify.status.success(),
            "{protection:?}: {}",
            String::from_utf8_lossy(&verify.stderr)
        );
    }
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap_or_else(|e| panic!("systemd-analyze: {e}"));
    let report = String::from_utf8_lossy(&security.stdout);
    let score = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_default()
        .to_string();
    eprintln!("{score}");
    assert!(security.status.success(), "exposure above 2.0:\n{report}");
}

/// A CA exported by Windows (PKCS#7 for the DC, DER for the cloud) is kept beside the config as
/// PEM, so `dc-ca.pem` is what its name says, and the agent's next start reads it.
#[test]
fn a_ca_file_given_as_der_or_pkcs7_is_kept_as_pem() {
    let cloud = shared();
    let key = cloud.issue_key(DOMAIN, None);
    let (_, p7b) = support::dc_ca_as_windows_exports_it();
    let cloud_der = fresh_dir("cloud-ca").join("cloud-ca.cer");
    let cloud_ca =
        ad_sync::directory::cert::load_ca_file(&cloud.ca).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&cloud_der, &cloud_ca.certs[0]).unwrap_or_else(|e| panic!("{e}"));
    let mut s = spec(cloud, Some(key));
    s.ca_file = Some(p7b.clone());
    s.cloud_ca = Some(cloud_der);
    let prefix = fresh_dir("ca-formats");
    let (out, json) = install(&s.write(), &prefix, &[]);
    assert_eq!(out.status.code(), Some(0), "{json:#}");
    let step = |id: &str| {
        json["steps"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["id"] == id))
            .map(|s| s["message"].as_str().unwrap_or_default().to_string())
            .unwrap_or_else(|| panic!("no {id}: {json:#}"))
    };
    assert!(
        step("ca.dc").contains("(a PKCS#7 bundle (DER), 1 certificate)"),
        "{json:#}"
    );
    assert!(
        step("ca.cloud").contains("(DER, 1 certificate)"),
        "{json:#}"
    );
    for (copy, source) in [
        ("dc-ca.pem", bed_ca_der()),
        ("cloud-ca.pem", cloud_ca.certs.clone()),
    ] {
        let kept = prefix.join("etc/ad-sync").join(copy);
        let text = std::fs::read_to_string(&kept).unwrap_or_else(|e| panic!("{e}"));
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----\n"), "{text}");
        let read = ad_sync::directory::cert::load_ca_file(&kept).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read.certs, source, "{copy} holds the same certificates");
    }
}

fn bed_ca_der() -> Vec<Vec<u8>> {
    ad_sync::directory::cert::load_ca_file(&support::bed().dc1.ca_file)
        .unwrap_or_else(|e| panic!("{e}"))
        .certs
}

/// Behind a corporate proxy: the cloud's name resolves nowhere but at the proxy (`.invalid`),
/// which wants a login. The checks go through `[cloud] proxy` (never the session's own proxy),
/// the install stores the proxy's password in the secret store (not in the config) and hands it
/// to the unit, and the installed agent reaches the cloud through the proxy with it. The direct
/// route fails, and a wrong password is named as the proxy's refusal without being shown.
#[test]
fn the_cloud_is_reached_through_the_configured_proxy_by_the_checks_the_install_and_the_agent() {
    const NAME: &str = "cloud.behind-proxy.invalid";
    const PROXY_PASSWORD: &str = "Pr0xy-Login-7c41e";
    let cloud = support::cloud::with_domains(CloudServer::start("proxied", &["--name", NAME]));
    let proxy = support::proxy::ConnectProxy::start(
        "agent",
        PROXY_PASSWORD,
        &[(
            NAME,
            std::net::SocketAddr::from(([127, 0, 0, 1], cloud.port())),
        )],
    );
    let key = cloud.issue_key(DOMAIN, None);
    let mut s = spec(&cloud, Some(key.clone()));
    s.cloud_url = Some(format!("https://{NAME}:{}", cloud.port()));
    let answers = s.write();
    let direct = std::fs::read_to_string(&answers).unwrap_or_default();
    let dir = answers.parent().unwrap_or(Path::new("/nonexistent"));
    std::fs::write(dir.join("proxy.pw"), format!("{PROXY_PASSWORD}\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    let with_proxy = |password_file: &str| {
        format!(
            "{direct}proxy = '{}'\nproxy_username = 'agent'\nproxy_password_file = '{password_file}'\n",
            proxy.url()
        )
    };
    let check = |text: &str| {
        std::fs::write(&answers, text).unwrap_or_else(|e| panic!("{e}"));
        let out = Command::new(setup_bin())
            .args(["check", "--json", "--answers"])
            .arg(&answers)
            // The session's proxy is not the route: only [cloud] proxy is.
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let status = |id: &str| {
            v["checks"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["id"] == id)
                .cloned()
                .unwrap_or_default()
        };
        (
            status("cloud.reachable"),
            status("cloud.tls"),
            status("connect_key.valid"),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };

    // Directly: the name resolves nowhere, and the fix names the session's proxy as unused.
    let (reach, _, _, all) = check(&direct);
    assert_eq!(reach["status"], "fail", "{all}");
    assert!(
        reach["fix"]
            .as_str()
            .is_some_and(|f| f.contains("HTTPS_PROXY") && f.contains("[cloud] proxy")),
        "{reach}"
    );

    // A wrong password: the proxy refuses, the error says so, the password is not shown.
    std::fs::write(dir.join("wrong.pw"), "not-the-Pr0xy-pass\n").unwrap_or_else(|e| panic!("{e}"));
    let (_, tls, _, all) = check(&with_proxy("wrong.pw"));
    assert_eq!(tls["status"], "fail", "{all}");
    assert!(
        tls["summary"].as_str().is_some_and(|s| s.contains("proxy")),
        "{tls}"
    );
    assert!(proxy.refused_logins() >= 1);
    assert!(!all.contains("not-the-Pr0xy-pass") && !all.contains(PROXY_PASSWORD));

    // Through the proxy with its login: every cloud check passes, through tunnels.
    let (reach, tls, key_valid, all) = check(&with_proxy("proxy.pw"));
    for c in [&reach, &tls, &key_valid] {
        assert_eq!(c["status"], "pass", "{all}");
    }
    assert!(
        reach["summary"]
            .as_str()
            .is_some_and(|s| s.contains("proxy")),
        "{reach}"
    );
    let tunnels = proxy.tunnels();
    assert!(tunnels >= 1, "{:?}", proxy.request_lines());
    assert!(!all.contains(PROXY_PASSWORD), "{all}");

    // The install: the password goes to the store, the config names the proxy and the user.
    let prefix = fresh_dir("proxied");
    let (out, json) = install(&answers, &prefix, &[]);
    assert_eq!(out.status.code(), Some(0), "{json:#}");
    let config = std::fs::read_to_string(config_of(&prefix)).unwrap_or_default();
    assert!(
        config.contains(&format!("proxy = \"{}\"", proxy.url()))
            && config.contains("proxy_username = \"agent\"")
            && !config.contains("proxy_password")
            && !config.contains(PROXY_PASSWORD),
        "{config}"
    );
    let store = ad_sync::secrets::FileStore::new(prefix.join("etc/ad-sync/secrets"));
    assert_eq!(
        store
            .read(ad_sync::secrets::PROXY_PASSWORD)
            .map(|s| s.expose().to_string())
            .ok()
            .as_deref(),
        Some(PROXY_PASSWORD)
    );
    let unit = std::fs::read_to_string(prefix.join("etc/systemd/system/ad-sync-agent.service"))
        .unwrap_or_default();
    assert!(unit.contains("proxy-password:"), "{unit}");

    // The agent as installed: it reaches the cloud through the proxy, with the stored login.
    let before = proxy.tunnels();
    let out = agent_once(&prefix);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(
        proxy.tunnels() > before,
        "the agent went through the proxy: {said}"
    );
    assert!(!said.contains(PROXY_PASSWORD), "{said}");
    let agent_id = json["agent_id"].as_str().unwrap_or_default().to_string();
    let agent_id = agent_id.as_str();
    assert!(
        agents(&cloud)
            .lines()
            .any(|l| l.contains(agent_id) && l.contains("primary")),
        "{}",
        agents(&cloud)
    );
    // An upgrade that does not repeat the proxy's password: checked, and run, with the stored
    // one.
    let mut s = spec(&cloud, None);
    s.cloud_url = Some(format!("https://{NAME}:{}", cloud.port()));
    let upgrade = s.write();
    let text = std::fs::read_to_string(&upgrade).unwrap_or_default();
    std::fs::write(
        &upgrade,
        format!(
            "{text}proxy = '{}'\nproxy_username = 'agent'\n",
            proxy.url()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (out, json) = install(&upgrade, &prefix, &[]);
    assert_eq!(out.status.code(), Some(0), "{json:#}");
    assert_eq!(json["plan"]["mode"], "upgrade", "{json:#}");
    assert!(store.has(ad_sync::secrets::PROXY_PASSWORD));

    // And its removal: deregistered through the proxy, the proxy's password gone with the rest.
    let out = uninstall(&prefix, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!store.has(ad_sync::secrets::PROXY_PASSWORD));
    assert!(
        agents(&cloud)
            .lines()
            .any(|l| l.contains(agent_id) && l.contains("deregistered"))
    );
}
