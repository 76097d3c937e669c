//! The Windows build, run: `ad-sync-setup.exe` and `ad-sync-agent.exe` (the
//! `x86_64-pc-windows-gnu` build `dev/test` makes) on a Windows member server stood in for by
//! Wine (`support::wine`), against the same real Samba DC and the same real `ad-sync-cloud` as
//! the Linux tests: the CLI, every check, the install with the Service Control Manager, the agent
//! as a service syncing a user, uninstall, the MSI with the Server Core path, and the wizard in a
//! real window through every page, photographed beside the Linux pictures.
//!
//! Where Wine is not Windows, each test says so where it matters. In short: no service
//! accounts or ACLs (Wine runs every process as one user and reduces a descriptor to Unix mode
//! bits, so `NT SERVICE\ad-sync-agent` and the folders' descriptors are set through the real
//! calls but not enforced; what they allow is proven by the model in core's
//! `install::access`), `sc qc` prints nothing (the service's definition is read from the
//! registry the SCM keeps, as on Windows), Direct3D 12 cannot compile shaders (the wizard must
//! fall back to Vulkan by itself), the revocation policy (see `support/wine/revocation.c`) and
//! `DecryptMessage`'s count (see `support/wine/secur32.c`).

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};
use support::cloud::{CloudServer, shared_for_wine as shared};
use support::report::{assert_exit_0, json, text};
use support::wine::{TlsRelay, WinHost, win_path};
use support::xwin::{Screen, Window, Xvfb};
use support::{Spec, testbed};

const SETUP: &str = "ad-sync-setup.exe";
const DOMAIN: &str = "DC=example,DC=com";
const SERVICE_KEY: &str = r"HKLM\System\CurrentControlSet\Services\ad-sync-agent";

/// How a Windows program under Wine reaches the DC and the cloud: through `TlsRelay`s that
/// present the servers' own certificates (see `support::wine::TlsRelay` for the Wine defect they
/// stand between). The cloud is reached by its DNS name, as a real one is: Wine 8.0's SChannel
/// matches only DNS names in a certificate, so by `127.0.0.1` it refuses the reference cloud's
/// IP SAN (which the product then reports as exactly that).
struct WinNet {
    dc: TlsRelay,
    cloud: TlsRelay,
}

impl WinNet {
    fn new(cloud: &CloudServer) -> WinNet {
        let dc1 = &support::bed().dc1;
        let tls = dc1.dir.join("private/tls");
        WinNet {
            dc: TlsRelay::start(
                &tls.join("cert.pem"),
                &tls.join("key.pem"),
                "127.0.0.1:636".parse().unwrap_or_else(|e| panic!("{e}")),
                testbed::DC1_HOST,
                &dc1.ca_file,
            ),
            cloud: TlsRelay::start(
                &cloud.tls.join("server.pem"),
                &cloud.tls.join("server.key"),
                std::net::SocketAddr::from(([127, 0, 0, 1], cloud.port())),
                "localhost",
                &cloud.ca,
            ),
        }
    }

    fn cloud_url(&self) -> String {
        format!("https://localhost:{}", self.cloud.port)
    }
}

/// The good answers as a Windows server's administrator would write them: Windows paths.
fn win_spec(net: &WinNet, cloud: &CloudServer, key: Option<String>) -> Spec {
    let mut s = Spec::good();
    s.port = Some(net.dc.port);
    s.ca_file = Some(PathBuf::from(win_path(&testbed_ca())));
    s.cloud_url = Some(net.cloud_url());
    s.cloud_ca = Some(PathBuf::from(win_path(&cloud.ca)));
    s.connect_key = key;
    s
}

fn testbed_ca() -> PathBuf {
    support::bed().dc1.ca_file.clone()
}

/// The same answers for the Linux build (Linux paths), to compare with.
fn linux_spec(cloud: &CloudServer, key: Option<String>) -> Spec {
    let mut s = Spec::good();
    s.cloud_url = Some(cloud.url.replace("127.0.0.1", "localhost"));
    s.cloud_ca = Some(cloud.ca.clone());
    s.connect_key = key;
    s
}

/// `(id, status)` of every check, in order.
fn statuses(report: &Value) -> Vec<(String, String)> {
    report["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks: {report:#}"))
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap_or_default().to_string(),
                c["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn check_named<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("no {id} in {report:#}"))
}

fn win_check(host: &WinHost, answers: &Path) -> (Output, Value) {
    let out = host.exe(SETUP, &["check", "--answers", &win_path(answers), "--json"]);
    let v = json(&out);
    (out, v)
}

fn linux_check(answers: &Path) -> (Output, Value) {
    let out = support::setup_cli(&[
        "check",
        "--answers",
        &answers.display().to_string(),
        "--json",
    ]);
    let v = json(&out);
    (out, v)
}

#[test]
fn the_windows_cli_validates_and_checks_exactly_like_the_linux_one() {
    let cloud = shared();
    let host = WinHost::start("cli");
    let net = WinNet::new(cloud);

    // validate-dn: the same JSON, byte for byte, valid or not.
    for (dn, code) in [
        ("ou=Staff;dc=example;dc=com", 0),
        ("OU=Bénéficiaires\\, Zürich;DC=example;DC=com", 0),
        ("OU=Staff,,DC=example,DC=com", 1),
    ] {
        let win = host.exe(SETUP, &["validate-dn", dn, "--json"]);
        let lin = support::setup_cli(&["validate-dn", dn, "--json"]);
        assert_eq!(win.status.code(), Some(code), "{dn}: {}", text(&win));
        assert_eq!(
            String::from_utf8_lossy(&win.stdout),
            String::from_utf8_lossy(&lin.stdout),
            "{dn}"
        );
    }

    // validate-key: offline (checksum), and with the cloud over HTTPS trusting [cloud] ca_file's
    // CA, the key read from standard input, never from the command line; the key stays unused.
    let key = cloud.issue_key(DOMAIN, None);
    let off = host.exe_stdin(SETUP, &["validate-key", "-", "--offline", "--json"], &key);
    assert_eq!(off.status.code(), Some(0), "{}", text(&off));
    let mut typo = key.clone().into_bytes();
    let last = typo.len() - 1;
    typo[last] = if typo[last] == b'A' { b'B' } else { b'A' };
    let typo = String::from_utf8(typo).unwrap_or_default();
    let bad = host.exe_stdin(SETUP, &["validate-key", "-", "--offline", "--json"], &typo);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    let ca = win_path(&cloud.ca);
    let online = host.exe_stdin(
        SETUP,
        &[
            "validate-key",
            "-",
            "--cloud",
            &net.cloud_url(),
            "--ca",
            &ca,
            "--domain",
            DOMAIN,
            "--json",
        ],
        &key,
    );
    assert_eq!(online.status.code(), Some(0), "{}", text(&online));
    let v = json(&online);
    assert_eq!(v["valid"], true, "{v:#}");
    assert!(
        !String::from_utf8_lossy(&online.stdout).contains(&key)
            && !String::from_utf8_lossy(&online.stderr).contains(&key),
        "the key is never printed: {}",
        text(&online)
    );

    // By address, Wine's SChannel refuses the certificate's IP SAN; the product says exactly
    // that, and how to get past it, instead of "not issued for 127.0.0.1".
    let by_ip = host.exe_stdin(
        SETUP,
        &[
            "validate-key",
            "-",
            "--cloud",
            &format!("https://127.0.0.1:{}", net.cloud.port),
            "--ca",
            &ca,
            "--json",
        ],
        &key,
    );
    let v = json(&by_ip);
    let error = v["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("as an IP address")
            && v["fix"].as_str().unwrap_or_default().contains("DNS name"),
        "{v:#}"
    );

    // check: LDAPS trusting [ldap] ca_file, the cloud trusting [cloud] ca_file. Every check
    // has the status it has on Linux, and all pass.
    let win_answers = win_spec(&net, cloud, Some(key.clone())).write();
    let lin_answers = linux_spec(cloud, Some(key.clone())).write();
    let (wout, wrep) = win_check(&host, &win_answers);
    let (_, lrep) = linux_check(&lin_answers);
    assert_exit_0(&wout, &wrep);
    assert_eq!(statuses(&wrep), statuses(&lrep), "{wrep:#}\n{lrep:#}");
    assert!(
        statuses(&wrep)
            .iter()
            .all(|(_, s)| s == "pass" || s == "warn"),
        "{wrep:#}"
    );
    assert_eq!(check_named(&wrep, "ldap.tls")["status"], "pass");
    assert!(
        check_named(&wrep, "ldap.tls")["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("revocation checked by Windows"),
        "the Windows build says what it did about revocation: {wrep:#}"
    );
    assert_eq!(check_named(&wrep, "cloud.tls")["status"], "pass");
    // The preview ran on Windows too: the cloud's names with the key, the domain paged.
    assert!(
        check_named(&wrep, "sync.preview")["summary"]
            .as_str()
            .unwrap_or_default()
            .starts_with("first sync: users: "),
        "{wrep:#}"
    );
    assert!(
        !String::from_utf8_lossy(&wout.stdout).contains(testbed::SVC_PASSWORD)
            && !String::from_utf8_lossy(&wout.stderr).contains(testbed::SVC_PASSWORD),
        "the password is never printed"
    );

    // The failures say the same thing on both: a wrong password, a Domain Admin, a CA nobody
    // trusts (the Samba CA is in neither Wine's nor Debian's roots).
    let mut wrong = win_spec(&net, cloud, None).user(testbed::accounts::TYPO);
    wrong.password = "Not-The-Password-1".into();
    let mut lwrong = linux_spec(cloud, None).user(testbed::accounts::TYPO);
    lwrong.password = wrong.password.clone();
    let admin = win_spec(&net, cloud, None).user(testbed::accounts::DOMAIN_ADMIN);
    let ladmin = linux_spec(cloud, None).user(testbed::accounts::DOMAIN_ADMIN);
    let mut untrusted = win_spec(&net, cloud, None);
    untrusted.ca_file = None;
    let mut luntrusted = linux_spec(cloud, None);
    luntrusted.ca_file = None;
    for (what, w, l, id) in [
        ("wrong password", wrong, lwrong, "ldap.bind"),
        ("Domain Admin", admin, ladmin, "account.not_privileged"),
        ("untrusted CA", untrusted, luntrusted, "ldap.tls"),
    ] {
        let (wout, wrep) = win_check(&host, &w.write());
        let (_, lrep) = linux_check(&l.write());
        assert_eq!(wout.status.code(), Some(1), "{what}: {wrep:#}");
        let (wc, lc) = (check_named(&wrep, id), check_named(&lrep, id));
        assert_eq!(wc["status"], "fail", "{what}: {wrep:#}");
        assert_eq!(wc["summary"], lc["summary"], "{what}");
        assert_eq!(wc["fix"], lc["fix"], "{what}");
    }

    // Without the test revocation provider, Wine 8.0 fails the chain policy with
    // CERT_E_REVOCATION_FAILURE (Windows does not: see support/wine/revocation.c). The product
    // must then name that cause, not call the CA untrusted.
    host.without_revocation_provider();
    let (wout, wrep) = win_check(&host, &win_answers);
    assert_eq!(wout.status.code(), Some(1), "{wrep:#}");
    let tls = check_named(&wrep, "ldap.tls");
    let summary = tls["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("whether it was revoked could not be checked")
            && !summary.contains("not issued by a CA"),
        "{tls:#}"
    );
    assert!(
        tls["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("revocation: none named"),
        "the certificate's detail says it names no CRL: {tls:#}"
    );
    let ctls = check_named(&wrep, "cloud.tls");
    assert!(
        ctls["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("whether it was revoked could not be checked"),
        "{ctls:#}"
    );
}

/// Finds a user by sAMAccountName in the test DC; its DN.
fn ad_user(sam: &str) -> Option<String> {
    support::cloud::block_on(async {
        let mut ldap = support::bed().dc1.admin().await.ok()?;
        let (rows, _) = ldap
            .search(
                testbed::BASE,
                ldap3::Scope::Subtree,
                &format!("(sAMAccountName={sam})"),
                vec!["distinguishedName"],
            )
            .await
            .ok()?
            .success()
            .ok()?;
        ldap.unbind().await.ok();
        rows.into_iter()
            .next()
            .map(|r| ldap3::SearchEntry::construct(r).dn)
    })
}

/// Every file the agent wrote under C:\ProgramData\ad-sync, with its log, for a failure message.
fn agent_files(host: &WinHost) -> String {
    let mut out = String::new();
    let mut todo = vec![host.c(r"ProgramData\ad-sync")];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push_str(&format!("{}\n", p.display()));
                if p.extension().is_some_and(|x| x == "log") {
                    out.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
                }
            }
        }
    }
    out
}

/// The agent's log on the Windows machine (empty when it wrote none).
fn agent_log(host: &WinHost) -> String {
    std::fs::read_to_string(host.c(r"ProgramData\ad-sync\logs\agent.log")).unwrap_or_default()
}

/// The cloud's line for this agent in `ad-sync-cloud agents`, and the whole listing.
fn agent_line(cloud: &CloudServer, agent_id: &str) -> (String, String) {
    let listed = cloud.admin_ok(&["agents"]);
    let line = listed
        .lines()
        .find(|l| l.contains(agent_id))
        .unwrap_or_default()
        .to_string();
    (line, listed)
}

fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn installs_as_a_windows_service_syncs_a_user_upgrades_in_place_and_uninstalls() {
    let cloud = shared();
    let host = WinHost::start("svc");
    let net = WinNet::new(cloud);
    let key = cloud.issue_key(DOMAIN, None);
    let answers = win_spec(&net, cloud, Some(key.clone())).write();

    // The real Windows paths: C:\Program Files\ad-sync, C:\ProgramData\ad-sync (no --prefix:
    // the Wine prefix is the machine).
    let started = Instant::now();
    let out = host.install_no_start(&answers);
    let install_time = started.elapsed();
    let v = json(&out);
    assert_exit_0(&out, &v);
    assert_eq!(v["result"], "installed", "{v:#}");
    assert_eq!(v["plan"]["mode"], "fresh");
    let agent_id = v["agent_id"].as_str().unwrap_or_default().to_string();
    assert!(agent_id.starts_with("agt-"), "{v:#}");
    println!("install under Wine: {} ms", install_time.as_millis());

    let config = host.c(r"ProgramData\ad-sync\agent.toml");
    let conf =
        std::fs::read_to_string(&config).unwrap_or_else(|e| panic!("{}: {e}", config.display()));
    assert!(
        !conf.contains("password_")
            && !conf.contains("password =")
            && !conf.contains("connect_key")
            && !conf.contains(&key)
            && !conf.contains(testbed::SVC_PASSWORD),
        "no secret in the config: {conf}"
    );
    // Encrypted at rest by DPAPI (machine scope): `<name>.dpapi`, no clear copy beside it, the
    // password nowhere in the blob. The service reads them back below (it syncs), which is the
    // DPAPI round trip. Wine's DPAPI is its own implementation (crypt32), not Windows' key
    // hierarchy: it shows the calls and the file handling, not Windows' key protection.
    for name in ad_sync::secrets::ALL {
        let p = host.c(&format!(r"ProgramData\ad-sync\secrets\{name}.dpapi"));
        assert!(p.is_file(), "{} stored", p.display());
        assert!(
            !host
                .c(&format!(r"ProgramData\ad-sync\secrets\{name}"))
                .exists(),
            "{name}: no clear copy"
        );
        let blob = std::fs::read(&p).unwrap_or_default();
        let pw = testbed::SVC_PASSWORD.as_bytes();
        assert!(
            !blob.windows(pw.len()).any(|w| w == pw),
            "{name}: the password is not in the blob"
        );
    }
    assert!(host.c(r"Program Files\ad-sync\ad-sync-agent.exe").is_file());
    // Who may do what, as the plan decided it (descriptors set through the Win32 API; Wine
    // keeps no ACLs, so the effect is the access model's, in core's install::access tests):
    // the service changes only its state and logs, and no other account reads the config or
    // a secret. The state and logs folders exist from the install on.
    let access = v["plan"]["access"]
        .as_array()
        .unwrap_or_else(|| panic!("no access statement: {v:#}"));
    let stated = |end: &str| {
        access
            .iter()
            .find(|r| r["path"].as_str().is_some_and(|p| p.ends_with(end)))
            .unwrap_or_else(|| panic!("no {end} in {access:#?}"))
    };
    for (end, service, users) in [
        (r"ad-sync\state", "modify", "none"),
        (r"ad-sync\logs", "modify", "none"),
        (r"ad-sync\secrets", "read", "none"),
        ("agent.toml", "read", "none"),
        (r"Program Files\ad-sync", "read", "read"),
    ] {
        let r = stated(end);
        assert_eq!(
            (r["service"].as_str(), r["users"].as_str()),
            (Some(service), Some(users)),
            "{r}"
        );
        assert_eq!(r["administrators"], "full control", "{r}");
    }
    assert!(
        stated(r"ad-sync\secrets")["sddl"]
            .as_str()
            .is_some_and(|d| d.starts_with("O:BAD:PAI")),
        "owned by Administrators, nothing inherited: {access:#?}"
    );
    for dir in [r"ProgramData\ad-sync\state", r"ProgramData\ad-sync\logs"] {
        assert!(host.c(dir).is_dir(), "{dir} made by the install");
    }
    let listed = cloud.admin_ok(&["agents"]);
    assert!(listed.contains(&agent_id), "{listed}");
    let k = ad_sync::connect_key::ConnectKey::parse(&key).unwrap_or_else(|e| panic!("{e}"));
    let state = support::cloud::block_on(cloud.client().check_key(&k, None))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        format!("{:?}", state.state),
        "Used",
        "the install used the key up"
    );

    // The Application event log source the agent writes under, with its message file.
    let source = host
        .reg_query(ad_sync::install::service::EVENT_SOURCE_KEY)
        .unwrap_or_else(|| panic!("the event log source is not registered"));
    assert!(
        source.contains("EventMessageFile") && source.contains("EventCreate.exe"),
        "{source}"
    );
    // The agent's errors reach the event log: Wine keeps no event log, but its ReportEventW
    // prints each event's text on its `eventlog` debug channel (err: for an error), which
    // shows the call and the text. On Windows the event is in Event Viewer under the source.
    let mut c = host.command(&[
        &host.bin.join("ad-sync-agent.exe").to_string_lossy(),
        "run",
        "--once",
        "--config",
        r"C:\nowhere\agent.toml",
        "--log-dir",
        "-",
    ]);
    c.env("WINEDEBUG", "err+eventlog,warn+eventlog");
    let out = c.output().unwrap_or_else(|e| panic!("{e}"));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.lines()
            .any(|l| l.contains("eventlog") && l.contains("nowhere") && l.contains("err")),
        "{said}"
    );

    // The SCM's definition, as Windows keeps it in the registry (Wine's `sc qc` prints nothing).
    let def = host
        .reg_query(SERVICE_KEY)
        .unwrap_or_else(|| panic!("the service is not registered"));
    let lower = def.to_ascii_lowercase();
    assert!(
        lower.contains(r"c:\program files\ad-sync\ad-sync-agent.exe")
            && lower.contains("service --config")
            && lower.contains(r"c:\programdata\ad-sync\agent.toml"),
        "ImagePath: {def}"
    );
    assert!(
        def.contains("DelayedAutostart") && def.contains("0x1"),
        "delayed automatic start: {def}"
    );
    assert!(def.contains("FailureActions"), "restart on failure: {def}");
    assert!(
        def.contains(r"NT SERVICE\ad-sync-agent"),
        "its own virtual account: {def}"
    );
    let start = def
        .lines()
        .find(|l| l.trim_start().starts_with("Start "))
        .unwrap_or_default();
    assert!(start.contains("0x2"), "automatic start: {def}");

    // A re-run upgrades in place: the same agent, one service, no key needed.
    let upgrade = win_spec(&net, cloud, None).write();
    let text_now = std::fs::read_to_string(&upgrade).unwrap_or_default();
    std::fs::write(
        &upgrade,
        format!("{text_now}\n[sync]\nuser_disconnection_action = \"remove\"\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = host.install_no_start(&upgrade);
    let v = json(&out);
    assert_exit_0(&out, &v);
    assert_eq!(v["plan"]["mode"], "upgrade");
    assert_eq!(v["agent_id"], agent_id.as_str());
    let services = host
        .reg_query(r"HKLM\System\CurrentControlSet\Services")
        .unwrap_or_default();
    assert_eq!(
        services
            .lines()
            .filter(|l| l.to_ascii_lowercase().contains("ad-sync"))
            .count(),
        1,
        "one service: {services}"
    );

    // The agent as a Windows service: the SCM starts it through its dispatcher; it heartbeats
    // and, as the only agent, becomes primary and creates the cloud's new user in AD.
    cloud.admin_ok(&[
        "user",
        "add",
        "winsvc1",
        "--given",
        "Wine",
        "--surname",
        "Service",
        "--domain",
        "DC=example,DC=com",
    ]);
    let out = host.sc(&["start", "ad-sync-agent"]);
    assert!(out.status.success(), "sc start: {}", text(&out));
    let dn = wait_for(Duration::from_secs(120), || ad_user("winsvc1")).unwrap_or_else(|| {
        panic!(
            "the service never created winsvc1; agent log:\n{}",
            agent_log(&host)
        )
    });
    assert!(dn.ends_with(testbed::OU_STAFF), "{dn}");
    let (line, listed) = agent_line(cloud, &agent_id);
    assert!(line.contains("primary"), "{listed}");
    let query = host.sc(&["query", "ad-sync-agent"]);
    assert!(
        String::from_utf8_lossy(&query.stdout).contains("RUNNING"),
        "{}\n{}",
        text(&query),
        agent_files(&host)
    );
    let out = host.sc(&["stop", "ad-sync-agent"]);
    assert!(out.status.success(), "sc stop: {}", text(&out));
    let stopped = wait_for(Duration::from_secs(30), || {
        let q = host.sc(&["query", "ad-sync-agent"]);
        String::from_utf8_lossy(&q.stdout)
            .contains("STOPPED")
            .then_some(())
    });
    assert!(stopped.is_some(), "the service did not stop cleanly");
    let log = agent_log(&host);
    // Wine keeps no ACLs: the start-up check of owner and DACL says it was not made, rather
    // than passing (the rule itself is `access::judge_installed`, table-tested).
    assert!(
        log.contains("not checked under Wine"),
        "the agent's log does not say its ACL check could not be made: {log}"
    );
    assert!(
        !log.contains(testbed::SVC_PASSWORD) && !log.contains(&key),
        "no secret in the agent's log"
    );

    // AD as a source under Windows: the agent reads AD's changes with DirSync and sends them to
    // the cloud (`export` by hand, from one container): a user, and a group with it as member.
    // In the Undelegated OU, which no other test of this testbed fills, and no page of the
    // wizard's pictures opens (a new OU under Staff would show in the sync group's tree).
    let ou = testbed::OU_UNDELEGATED.to_string();
    let team = format!("CN=winexp-team,{ou}");
    support::cloud::block_on(async {
        let mut l = support::bed()
            .dc1
            .admin()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let user = testbed::add_user(&mut l, &ou, "winexp1", "512")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        l.modify(
            &user,
            vec![
                ldap3::Mod::Replace("givenName", std::collections::HashSet::from(["Wine"])),
                ldap3::Mod::Replace("sn", std::collections::HashSet::from(["Export"])),
            ],
        )
        .await
        .and_then(|r| r.success())
        .unwrap_or_else(|e| panic!("{e}"));
        testbed::add_group(&mut l, &team, "winexp-team", "-2147483646")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        testbed::add_member(&mut l, &team, &user)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = l.unbind().await;
    });
    let out = host.exe(
        "ad-sync-agent.exe",
        &[
            "export",
            "--config",
            r"C:\ProgramData\ad-sync\agent.toml",
            "--container",
            &ou,
            "--json",
        ],
    );
    let v = json(&out);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(v["created"], 2, "the user and the group: {v:#}");
    assert!(!text(&out).contains(testbed::SVC_PASSWORD));
    let groups = cloud.admin_ok(&[
        "group",
        "list",
        "--source",
        "ad",
        "--json",
        "--domain",
        "DC=example,DC=com",
    ]);
    let groups: Value = serde_json::from_str(&groups).unwrap_or_else(|e| panic!("{e}: {groups}"));
    let team_listed = groups["groups"]
        .as_array()
        .and_then(|a| a.iter().find(|g| g["name"] == "winexp-team"))
        .unwrap_or_else(|| panic!("the group from AD is not in the cloud: {groups:#}"));
    assert_eq!(
        team_listed["members"],
        serde_json::json!(["winexp1"]),
        "{groups:#}"
    );

    // The rest of their lives in AD, each step exported by the Windows build from the cloud's
    // cookie: the user's title changed and the user and the group renamed; the user moved out
    // of the container (suspended) and back (restored); the group deleted (the reconciliation
    // finds it: the service account may not list Deleted Objects, as on a Windows domain by
    // default) and brought back from its tombstone (restored). One departure
    // in a directory of two is over the deletion threshold: each is let through by hand.
    let user = format!("CN=winexp1,{ou}");
    let export = |extra: &[&str]| -> Value {
        let mut args = vec![
            "export",
            "--config",
            r"C:\ProgramData\ad-sync\agent.toml",
            "--container",
            &ou,
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = host.exe("ad-sync-agent.exe", &args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(!text(&out).contains(testbed::SVC_PASSWORD));
        json(&out)
    };
    let in_cloud = |what: &str, deleted: bool| -> Value {
        let mut args = vec![
            what,
            "list",
            "--source",
            "ad",
            "--json",
            "--domain",
            "DC=example,DC=com",
        ];
        if deleted {
            args.push("--deleted");
        }
        let listed = cloud.admin_ok(&args);
        let v: Value = serde_json::from_str(&listed).unwrap_or_else(|e| panic!("{e}: {listed}"));
        v
    };
    let named = |list: &Value, key: &str, name: &str| -> Option<Value> {
        list[key]
            .as_array()
            .and_then(|a| a.iter().find(|o| o["name"] == name).cloned())
    };
    let in_ad = |step: &str, f: &AdStep<'_>| {
        support::cloud::block_on(async {
            let mut l = support::bed()
                .dc1
                .admin()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            f(&mut l).await.unwrap_or_else(|e| panic!("{step}: {e}"));
            let _ = l.unbind().await;
        })
    };
    let ldap_ok = |r: Result<ldap3::LdapResult, ldap3::LdapError>| -> Result<(), String> {
        r.and_then(|r| r.success())
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    in_ad("the title and the renames", &|l| {
        let (user, team) = (user.clone(), team.clone());
        Box::pin(async move {
            ldap_ok(
                l.modify(
                    &user,
                    vec![
                        ldap3::Mod::Replace("title", std::collections::HashSet::from(["Lead"])),
                        ldap3::Mod::Replace(
                            "sAMAccountName",
                            std::collections::HashSet::from(["winexp1b"]),
                        ),
                    ],
                )
                .await,
            )?;
            ldap_ok(
                l.modify(
                    &team,
                    vec![ldap3::Mod::Replace(
                        "sAMAccountName",
                        std::collections::HashSet::from(["winexp-team2"]),
                    )],
                )
                .await,
            )
        })
    });
    let v = export(&[]);
    assert_eq!(
        (v["full"].clone(), v["updated"].clone()),
        (false.into(), 2.into()),
        "{v:#}"
    );
    let users = in_cloud("user", false);
    let renamed = named(&users, "users", "winexp1b")
        .unwrap_or_else(|| panic!("the renamed user is not in the cloud: {users:#}"));
    assert_eq!(renamed["attributes"]["title"], "Lead", "{renamed:#}");
    let groups = in_cloud("group", false);
    let team2 = named(&groups, "groups", "winexp-team2")
        .unwrap_or_else(|| panic!("the renamed group is not in the cloud: {groups:#}"));
    assert_eq!(
        team2["members"],
        serde_json::json!(["winexp1b"]),
        "{team2:#}"
    );

    // The user moved from one OU to another, as ADUC's Move does.
    let move_user = |step: &str, from: &'static str, to: &'static str| {
        in_ad(step, &|l| {
            Box::pin(async move {
                ldap_ok(
                    l.modifydn(&format!("CN=winexp1,{from}"), "CN=winexp1", true, Some(to))
                        .await,
                )
            })
        })
    };
    move_user(
        "the user moved out of the container",
        testbed::OU_UNDELEGATED,
        testbed::OU_STAFF,
    );
    let v = export(&["--allow-deletions", "1"]);
    assert_eq!(v["suspended"], 1, "{v:#}");
    assert!(
        named(&in_cloud("user", true), "users", "winexp1b").is_some(),
        "kept suspended in the cloud"
    );
    move_user(
        "the user moved back",
        testbed::OU_STAFF,
        testbed::OU_UNDELEGATED,
    );
    let v = export(&[]);
    assert_eq!(v["restored"], 1, "{v:#}");
    assert!(named(&in_cloud("user", false), "users", "winexp1b").is_some());

    in_ad("the group deleted", &|l| {
        let team = team.clone();
        Box::pin(async move { ldap_ok(l.delete(&team).await) })
    });
    let v = export(&["--resync", "--allow-deletions", "1"]);
    assert_eq!(v["suspended"], 1, "the reconciliation finds it gone: {v:#}");
    assert!(named(&in_cloud("group", true), "groups", "winexp-team2").is_some());
    in_ad("the group brought back from its tombstone", &|l| {
        let team = team.clone();
        Box::pin(async move { testbed::reanimate(l, "winexp-team2", &team).await })
    });
    let v = export(&[]);
    assert_eq!(v["restored"], 1, "{v:#}");
    assert!(
        named(&in_cloud("group", false), "groups", "winexp-team2").is_some(),
        "the group is restored"
    );

    // The import as an administrator runs it on Windows: the agent reads its secrets from the
    // store and pages the OU (the in-chain search for privileged members included); a dry
    // run asks the cloud and changes nothing.
    let out = host.exe(
        "ad-sync-agent.exe",
        &[
            "import",
            "--config",
            r"C:\ProgramData\ad-sync\agent.toml",
            "--dry-run",
            "--json",
        ],
    );
    let v = json(&out);
    assert!(matches!(out.status.code(), Some(0 | 4)), "{}", text(&out));
    assert_eq!(v["dry_run"], true, "{v:#}");
    let skipped = v["items"]
        .as_array()
        .map(|a| a.iter().filter(|i| i["outcome"] == "skipped").count())
        .unwrap_or(0);
    assert!(
        skipped >= 1,
        "the sync group at least is never imported: {v:#}"
    );
    assert!(
        v["items"].as_array().is_some_and(|a| a
            .iter()
            .any(|i| i["name"] == "winsvc1" && i["outcome"] == "already")),
        "the user the service created is managed already: {v:#}"
    );
    assert!(!text(&out).contains(testbed::SVC_PASSWORD));

    // Uninstall: the service and the secrets go; the cloud is told.
    let out = host.exe(SETUP, &["uninstall"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(service_key_gone(&host), "the service is removed");
    assert!(
        host.reg_query(ad_sync::install::service::EVENT_SOURCE_KEY)
            .is_none(),
        "the event log source is removed"
    );
    assert!(
        !host.c(r"ProgramData\ad-sync\secrets").exists(),
        "the secrets are removed"
    );
    let (line, listed) = agent_line(cloud, &agent_id);
    assert!(line.contains("deregistered"), "{listed}");
}

/// The MSI `dist/msi/build` makes from the same Windows build, signed (programs and MSI) with
/// a throwaway test certificate as CI signs it; `version` gives it a later product version
/// than Cargo.toml's (an upgrade). Returns the MSI and the test CA that verifies it.
fn build_msi(tag: &str, version: Option<&str>) -> (PathBuf, PathBuf) {
    let out =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("msi-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap_or_else(|e| panic!("{e}"));
    let cert = out.join("signing");
    let mut c = std::process::Command::new("bash");
    c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/msi/build"))
        .args(["--profile", "debug", "--no-build", "--out"])
        .arg(&out)
        .arg("--test-sign")
        .arg(&cert)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if let Some(v) = version {
        c.args(["--version", v]);
    }
    let built = c.output().unwrap_or_else(|e| panic!("dist/msi/build: {e}"));
    assert!(built.status.success(), "dist/msi/build: {}", text(&built));
    let msi = PathBuf::from(
        String::from_utf8_lossy(&built.stdout)
            .trim()
            .lines()
            .last()
            .unwrap_or_default(),
    );
    (msi, cert.join("ca.pem"))
}

/// `osslsigncode verify`: whether `file` carries an Authenticode signature that chains to `ca`.
fn signature_verifies(file: &Path, ca: &Path) -> (bool, String) {
    let out = std::process::Command::new("osslsigncode")
        .args(["verify", "-CAfile"])
        .arg(ca)
        .arg("-in")
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("osslsigncode (dev/setup-machine installs it): {e}"));
    (out.status.success(), text(&out))
}

/// `msiinfo export MSI TABLE` (msitools): the table as tab-separated text.
fn msi_table(msi: &Path, table: &str) -> String {
    let out = std::process::Command::new("msiinfo")
        .arg("export")
        .arg(msi)
        .arg(table)
        .output()
        .unwrap_or_else(|e| panic!("msiinfo (msitools, dev/setup-machine): {e}"));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// What Windows' Properties > Details and UAC read from a program: its version resource and
/// whether it opens a console (its PE subsystem).
fn pe_facts(exe: &Path) -> (std::collections::BTreeMap<String, String>, [u16; 3], u16) {
    use pelite::pe64::{Pe, PeFile};
    let bytes = std::fs::read(exe).unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
    let pe = PeFile::from_bytes(&bytes).unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
    let info = pe
        .resources()
        .map_err(|e| e.to_string())
        .and_then(|r| r.version_info().map_err(|e| e.to_string()))
        .unwrap_or_else(|e| panic!("{}: no version resource ({e})", exe.display()));
    let lang = *info
        .translation()
        .first()
        .unwrap_or_else(|| panic!("{}: no translation", exe.display()));
    let mut strings = std::collections::BTreeMap::new();
    info.strings(lang, |k, v| {
        strings.insert(k.to_string(), v.to_string());
    });
    let fixed = info
        .fixed()
        .unwrap_or_else(|| panic!("{}: no fixed file info", exe.display()));
    let v = fixed.dwFileVersion;
    (
        strings,
        [v.Major, v.Minor, v.Patch],
        pe.optional_header().Subsystem,
    )
}

/// What an administrator (and UAC) sees before running anything: the MSI and each program in it
/// signed by the publisher, each program versioned from the crate, the wizard a GUI program (no
/// console window on double-click) beside its console twin, Apps & features' publisher and links,
/// and no service in the MSI (the product's install registers it once it is configured).
#[test]
fn the_msi_and_every_program_in_it_are_signed_versioned_and_register_no_service() {
    let (msi, ca) = build_msi("signed", None);
    let (ok, said) = signature_verifies(&msi, &ca);
    assert!(ok, "the MSI's signature: {said}");
    // The check can fail: Cargo's own output is not signed.
    let (ok, _) = signature_verifies(&support::wine::windows_build().join(SETUP), &ca);
    assert!(!ok, "an unsigned program does not verify");

    let files = msi.with_extension("extracted");
    let out = std::process::Command::new("msiextract")
        .arg("-C")
        .arg(&files)
        .arg(&msi)
        .output()
        .unwrap_or_else(|e| panic!("msiextract (msitools): {e}"));
    assert!(out.status.success(), "msiextract: {}", text(&out));
    // msiextract names the folder by the MSI's own directory name (INSTALLDIR, "ad-sync").
    let dir = files.join("ad-sync");
    let version: Vec<u16> = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|n| n.parse().unwrap_or(0))
        .collect();
    const GUI: u16 = 2;
    const CONSOLE: u16 = 3;
    for (name, subsystem) in [
        ("ad-sync-setup.exe", GUI),
        ("ad-sync-setup.com", CONSOLE),
        ("ad-sync-agent.exe", CONSOLE),
    ] {
        let exe = dir.join(name);
        let (ok, said) = signature_verifies(&exe, &ca);
        assert!(ok, "{name} in the MSI is signed: {said}");
        let (strings, fixed, sub) = pe_facts(&exe);
        assert_eq!(fixed.to_vec(), version, "{name}: {strings:?}");
        assert_eq!(
            strings.get("FileVersion").map(String::as_str),
            Some(env!("CARGO_PKG_VERSION")),
            "{name}"
        );
        assert_eq!(
            strings.get("CompanyName").map(String::as_str),
            Some("The ad-sync project"),
            "{name}"
        );
        assert_eq!(
            strings.get("OriginalFilename").map(String::as_str),
            Some(name),
            "{name}"
        );
        assert!(
            strings
                .get("FileDescription")
                .is_some_and(|d| !d.is_empty()),
            "{name}: {strings:?}"
        );
        assert_eq!(sub, subsystem, "{name}'s subsystem");
    }
    // The cloud's program is versioned too (it is not in the MSI).
    let (strings, _, _) = pe_facts(&support::wine::windows_build().join("ad-sync-cloud.exe"));
    assert_eq!(
        strings.get("ProductName").map(String::as_str),
        Some("ad-sync")
    );

    let props = msi_table(&msi, "Property");
    for want in [
        "Manufacturer\tThe ad-sync project",
        "ARPHELPLINK\thttps://",
        "ARPURLINFOABOUT\thttps://",
    ] {
        assert!(props.contains(want), "{want} in {props}");
    }
    // An exported table is three header lines (columns, types, name and keys), then its rows.
    let rows = |table: &str| msi_table(&msi, table).lines().skip(3).count();
    assert_eq!(rows("ServiceControl"), 1, "the MSI stops the service");
    assert_eq!(
        rows("ServiceInstall"),
        0,
        "the MSI registers no service: {}",
        msi_table(&msi, "ServiceInstall")
    );
    let actions = msi_table(&msi, "CustomAction");
    for want in [
        "[#SetupExe]|install|--answers|[ANSWERS]",
        "[#SetupExe]|uninstall|--force\t",
        "[#SetupExe]|uninstall|--force|--keep-config",
        "[#SetupExe]|restart|--if-installed",
        "AdSyncMsiAction\tRunProduct",
    ] {
        assert!(actions.contains(want), "{want} in {actions}");
    }
    // The custom action's DLL, as the MSI carries it: signed too.
    let dll = msi.with_extension("action.dll");
    let out = std::process::Command::new("msiinfo")
        .arg("extract")
        .arg(&msi)
        .arg("Binary.AdSyncMsiAction")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&dll, &out.stdout).unwrap_or_else(|e| panic!("{e}"));
    let (ok, said) = signature_verifies(&dll, &ca);
    assert!(ok, "the custom action DLL is signed: {said}");
    std::fs::remove_dir_all(msi.parent().unwrap_or(Path::new("/nonexistent"))).ok();
}

/// A Windows Installer log as text, whichever encoding msiexec wrote it in (UTF-16 with a BOM,
/// or 8-bit).
fn msi_log_text(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    if bytes.starts_with(&[0xff, 0xfe]) {
        let units: Vec<u16> = bytes[2..]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    } else {
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// `C:\ProgramData\ad-sync\logs\setup.log` on the Windows machine.
fn setup_log(host: &WinHost) -> String {
    std::fs::read_to_string(host.c(r"ProgramData\ad-sync\logs\setup.log")).unwrap_or_default()
}

/// Whether the SCM reports the agent service running.
/// Whether the service's key leaves the registry within 30 s. DeleteService only marks a
/// service for deletion: the SCM removes its key once the last handle to it is closed (on
/// Windows as under Wine), which can be a moment after the removal has returned.
fn service_key_gone(host: &WinHost) -> bool {
    // Wine deletes a removed service's key once the service's process has ended. Under a full
    // CI run (seven Wine prefixes on two cores) that once took longer than 30 s.
    wait_for(Duration::from_secs(120), || {
        host.reg_query(SERVICE_KEY).is_none().then_some(())
    })
    .is_some()
}

fn service_running(host: &WinHost) -> bool {
    let q = host.sc(&["query", "ad-sync-agent"]);
    String::from_utf8_lossy(&q.stdout).contains("RUNNING")
}

/// Server Core in one command: `msiexec /i ad-sync.msi /qn ANSWERS=...` installs the programs,
/// then the product's own install configures, enrolls and starts the agent. A failure there
/// fails the MSI, which rolls the programs back; the install undid itself and left the key
/// unused, and the setup log says why. Removing the product (`msiexec /x`) runs the product's
/// uninstall first: the agent is deregistered, the service, secrets, state and config are gone.
/// Wine's msiexec runs the MSI's deferred custom actions and its rollback as Windows Installer
/// does for this package; its SCM runs the service as the same user (see the module's words).
#[test]
fn msi_with_answers_installs_enrolls_and_starts_in_one_command_and_its_removal_leaves_no_enrollment()
 {
    let cloud = shared();
    let host = WinHost::start("msians");
    let net = WinNet::new(cloud);
    let (msi, _) = build_msi("answers", None);
    let msi_win = win_path(&msi);
    let msiexec = |extra: &[&str]| {
        let mut args = vec!["msiexec"];
        args.extend_from_slice(extra);
        host.wine(&args, Duration::from_secs(300))
    };

    // A key used up already: the checks refuse, the MSI fails and rolls back.
    let used = cloud.issue_key(DOMAIN, None);
    cloud.use_up(&used, DOMAIN);
    let bad = win_spec(&net, cloud, Some(used.clone())).write();
    let out = msiexec(&[
        "/i",
        &msi_win,
        "/qn",
        &format!("ANSWERS={}", win_path(&bad)),
        "/l*v",
        r"C:\msi-failed.log",
    ]);
    assert!(!out.status.success(), "the MSI fails: {}", text(&out));
    assert!(
        !host.c(r"Program Files\ad-sync\ad-sync-setup.exe").exists(),
        "the programs are rolled back"
    );
    assert!(host.reg_query(SERVICE_KEY).is_none(), "no service");
    assert!(!host.c(r"ProgramData\ad-sync\agent.toml").exists());
    let log = setup_log(&host);
    assert!(
        log.contains("check connect_key.valid FAIL")
            && log.contains("nothing was installed and no connect key was used"),
        "the setup log says why: {log}"
    );
    assert!(!log.contains(&used), "{log}");
    // And in Windows Installer's own log, through the custom action's DLL: the failed check
    // with its fix, and the action's failure.
    let msi_log = msi_log_text(&host.c("msi-failed.log"));
    assert!(
        msi_log.contains("ad-sync: FAIL") && msi_log.contains("connect_key.valid"),
        "{msi_log}"
    );
    assert!(
        msi_log.contains("ad-sync: install exited with 1"),
        "{msi_log}"
    );
    assert!(!msi_log.contains(&used), "no key in the MSI log");

    let key = cloud.issue_key(DOMAIN, None);
    let good = win_spec(&net, cloud, Some(key.clone())).write();
    let out = msiexec(&[
        "/i",
        &msi_win,
        "/qn",
        &format!("ANSWERS={}", win_path(&good)),
    ]);
    assert!(
        out.status.success(),
        "msiexec /i ANSWERS=: {}\n{}",
        text(&out),
        setup_log(&host)
    );
    let log = setup_log(&host);
    let agent_id = log
        .split("(agent ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap_or_else(|| panic!("no agent in the setup log: {log}"))
        .to_string();
    let def = host.reg_query(SERVICE_KEY).unwrap_or_default();
    assert!(
        def.contains("DelayedAutostart") && def.contains("FailureActions"),
        "the product's install registered the service: {def}"
    );
    let running = wait_for(Duration::from_secs(60), || {
        service_running(&host).then_some(())
    });
    assert!(
        running.is_some(),
        "the service runs\n{}",
        agent_files(&host)
    );
    let primary = wait_for(Duration::from_secs(120), || {
        agent_line(cloud, &agent_id)
            .0
            .contains("primary")
            .then_some(())
    });
    assert!(
        primary.is_some(),
        "the agent reached the cloud: {}\n{}",
        agent_line(cloud, &agent_id).1,
        agent_log(&host)
    );

    // Apps & features' Uninstall.
    let out = msiexec(&["/x", &msi_win, "/qn"]);
    assert!(out.status.success(), "msiexec /x: {}", text(&out));
    let (line, listed) = agent_line(cloud, &agent_id);
    assert!(line.contains("deregistered"), "{listed}");
    assert!(
        service_key_gone(&host),
        "the service is gone; the setup log says:\n{}\nthe MSI's log:\n{}",
        setup_log(&host),
        text(&out)
    );
    for gone in [
        r"Program Files\ad-sync\ad-sync-setup.exe",
        r"Program Files\ad-sync\ad-sync-agent.exe",
        r"ProgramData\ad-sync\secrets",
        r"ProgramData\ad-sync\state",
        r"ProgramData\ad-sync\agent.toml",
    ] {
        assert!(!host.c(gone).exists(), "{gone} is removed");
    }
    let log = setup_log(&host);
    assert!(log.contains("result: uninstalled"), "{log}");
    for secret in [key.as_str(), testbed::SVC_PASSWORD] {
        assert!(!log.contains(secret), "no secret in the setup log: {log}");
    }
    std::fs::remove_dir_all(msi.parent().unwrap_or(Path::new("/nonexistent"))).ok();
}

/// The next patch version after Cargo.toml's: a later MSI of the same programs.
fn next_version() -> String {
    let mut parts: Vec<u32> = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|n| n.parse().unwrap_or(0))
        .collect();
    if let Some(last) = parts.last_mut() {
        *last += 1;
    }
    parts
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

/// Server Core in steps: the MSI alone puts the programs in place and registers no service (an
/// unconfigured one would fail at every boot); `ad-sync-setup install` from a console (the .com
/// twin, which a shell waits for) configures and registers it; a major upgrade keeps the
/// service's settings and starts it again; removal with KEEPCONFIG=1 deregisters the agent and
/// removes the service, secrets and state but keeps agent.toml. docs/install.md documents
/// exactly these commands.
#[test]
fn server_core_msi_then_command_line_install_upgrade_and_removal_keeping_the_config() {
    let cloud = shared();
    let host = WinHost::start("msi");
    let net = WinNet::new(cloud);
    let (msi, _) = build_msi("core", None);
    let msi_win = win_path(&msi);

    let out = host.wine(
        &["msiexec", "/i", &msi_win, "/qn"],
        Duration::from_secs(180),
    );
    assert!(out.status.success(), "msiexec /i: {}", text(&out));
    let setup = host.c(r"Program Files\ad-sync\ad-sync-setup.exe");
    assert!(
        setup.is_file()
            && host.c(r"Program Files\ad-sync\ad-sync-setup.com").is_file()
            && host.c(r"Program Files\ad-sync\ad-sync-agent.exe").is_file()
    );
    assert!(
        host.reg_query(SERVICE_KEY).is_none(),
        "the MSI registers no service before there is a configuration"
    );

    // The installed console twin, from C:\Program Files\ad-sync, as typed on Server Core.
    let key = cloud.issue_key(DOMAIN, None);
    let answers = win_spec(&net, cloud, Some(key)).write();
    let program = r"C:\Program Files\ad-sync\ad-sync-setup.com";
    let out = host.wine(
        &[
            program,
            "install",
            "--answers",
            &win_path(&answers),
            "--no-start",
            "--json",
        ],
        Duration::from_secs(240),
    );
    let v = json(&out);
    assert_exit_0(&out, &v);
    assert_eq!(v["result"], "installed");
    let agent_id = v["agent_id"].as_str().unwrap_or_default().to_string();
    let def = host.reg_query(SERVICE_KEY).unwrap_or_default();
    assert!(def.contains("DelayedAutostart"), "{def}");
    assert!(!service_running(&host), "--no-start");

    // A later version over it: the service (the product's, not the MSI's) keeps its settings
    // and runs again. A major upgrade is the old product's removal with UPGRADINGPRODUCTCODE
    // set (Windows Installer's RemoveExistingProducts sets it in the old product's session),
    // then the new install. Wine's RemoveExistingProducts leaves it unset there (measured: the
    // old product's uninstall custom action ran and deregistered the agent), so this runs the
    // two halves as Windows runs them; the conditions under test are the package's own.
    let (later, _) = build_msi("core-later", Some(&next_version()));
    let later_win = win_path(&later);
    let out = host.wine(
        &[
            "msiexec",
            "/x",
            &msi_win,
            "/qn",
            "UPGRADINGPRODUCTCODE={00000000-0000-0000-0000-000000000001}",
        ],
        Duration::from_secs(300),
    );
    assert!(
        out.status.success(),
        "the upgrade's removal: {}",
        text(&out)
    );
    assert!(
        host.reg_query(SERVICE_KEY).is_some()
            && host.c(r"ProgramData\ad-sync\agent.toml").is_file(),
        "an upgrade's removal of the old version leaves the agent installed\n{}",
        setup_log(&host)
    );
    let out = host.wine(
        &["msiexec", "/i", &later_win, "/qn"],
        Duration::from_secs(300),
    );
    assert!(
        out.status.success(),
        "msiexec /i (upgrade): {}\n{}",
        text(&out),
        setup_log(&host)
    );
    let after = host.reg_query(SERVICE_KEY).unwrap_or_default();
    for kept in [
        "DelayedAutostart",
        "FailureActions",
        r"NT SERVICE\ad-sync-agent",
    ] {
        assert!(after.contains(kept), "{kept} kept: {after}");
    }
    assert!(setup.is_file(), "the programs are in place");
    let running = wait_for(Duration::from_secs(60), || {
        service_running(&host).then_some(())
    });
    assert!(
        running.is_some(),
        "the upgrade starts the agent again\n{}",
        setup_log(&host)
    );
    assert!(
        setup_log(&host).contains("the agent service runs again"),
        "{}",
        setup_log(&host)
    );

    let out = host.wine(
        &["msiexec", "/x", &later_win, "/qn", "KEEPCONFIG=1"],
        Duration::from_secs(300),
    );
    assert!(out.status.success(), "msiexec /x: {}", text(&out));
    assert!(!setup.exists(), "the programs are removed");
    assert!(service_key_gone(&host), "the service is removed");
    assert!(
        !host.c(r"ProgramData\ad-sync\secrets").exists(),
        "the secrets are removed"
    );
    assert!(
        !host.c(r"ProgramData\ad-sync\state").exists(),
        "the state is removed"
    );
    assert!(
        host.c(r"ProgramData\ad-sync\agent.toml").is_file(),
        "KEEPCONFIG=1 keeps the config"
    );
    let (line, listed) = agent_line(cloud, &agent_id);
    assert!(line.contains("deregistered"), "{listed}");
    for m in [&msi, &later] {
        std::fs::remove_dir_all(m.parent().unwrap_or(Path::new("/nonexistent"))).ok();
    }
}

/// One change an administrator makes in AD, on an admin session (the Windows service test's
/// AD-as-a-source steps).
type AdStep<'a> = dyn Fn(
        &mut ldap3::Ldap,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + '_>>
    + 'a;

/// Where the Windows build's page pictures are kept, beside the Linux ones.
fn snapshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/wizard")
}

/// Compares `shot` with the committed `windows-<name>.png`, as a kittest snapshot compares
/// (UPDATE_SNAPSHOTS=1 takes the new picture). Regions whose text depends on the run (the
/// DC's certificate, dates, the cloud's port) are painted over in both pictures first: `masks`
/// are the screen's nodes whose name contains one of the given texts.
fn compare_with_snapshot(name: &str, shot: &Path, masks: &[Value]) -> Option<String> {
    let reference = snapshots().join(format!("windows-{name}.png"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::copy(shot, &reference).unwrap_or_else(|e| panic!("{e}"));
    }
    if !reference.is_file() {
        return Some(format!(
            "{} is missing: run this test with UPDATE_SNAPSHOTS=1 and commit it",
            reference.display()
        ));
    }
    let mut draw = Vec::new();
    for n in masks {
        let r = |k: &str| n[k].as_f64().unwrap_or(0.0).round();
        draw.push("-draw".to_string());
        draw.push(format!(
            "rectangle {},{} {},{}",
            r("x0") - 2.0,
            r("y0") - 2.0,
            r("x1") + 2.0,
            r("y1") + 2.0
        ));
    }
    let masked = |from: &Path, tag: &str| -> PathBuf {
        let out = shot.with_extension(format!("{tag}.masked.png"));
        let st = std::process::Command::new("convert")
            .arg(from)
            .args(["-fill", "magenta"])
            .args(&draw)
            .arg(&out)
            .status()
            .unwrap_or_else(|e| panic!("convert (imagemagick): {e}"));
        assert!(st.success(), "convert {}", from.display());
        out
    };
    let (a, b) = (masked(&reference, "reference"), masked(shot, "shot"));
    let diff = std::process::Command::new("compare")
        .args(["-metric", "AE", "-fuzz", "10%"])
        .arg(&a)
        .arg(&b)
        .arg("null:")
        .output()
        .unwrap_or_else(|e| panic!("compare (imagemagick): {e}"));
    // AE prints the number of differing pixels on stderr (and an error when the sizes differ).
    let err = String::from_utf8_lossy(&diff.stderr).to_string();
    let differing: f64 = err
        .split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or(f64::MAX);
    // A few hundred pixels of anti-aliasing move between runs; a changed word is thousands.
    if differing > 600.0 {
        let new = reference.with_extension("new.png");
        std::fs::copy(shot, &new).ok();
        return Some(format!(
            "the Windows wizard's page {name} differs from {} in {differing} pixels ({}); see {} (UPDATE_SNAPSHOTS=1 accepts it)",
            reference.display(),
            err.trim(),
            new.display()
        ));
    }
    None
}

/// The Windows build's wizard as an administrator on a Windows member server meets it: the
/// `.exe` under Wine in a real X window (Xvfb), driven through every page by real X11 input
/// (`support::xwin`, the driver the Linux release window test uses) against the test domain and
/// the reference cloud, up to Install (the service registered with Wine's SCM) and Finish. Each
/// page is photographed and compared with `tests/snapshots/wizard/windows-NN-*.png`, kept beside
/// the Linux pictures of the same pages; nothing may reach past the window's edge.
///
/// The renderer is the one the wizard picks by itself (no WGPU_BACKEND): under Wine, Direct3D 12
/// exists but cannot compile a shader, so the wizard must find that out and draw with the next
/// backend, as it must on a server whose GPU driver is broken.
#[test]
fn the_windows_wizard_under_wine_falls_back_from_a_failing_renderer_and_draws_every_page() {
    let x = Xvfb::start();
    let host = WinHost::start_with_display("gui", &x.display);
    let cloud = shared();
    let net = WinNet::new(cloud);
    let key = cloud.issue_key(DOMAIN, None);
    let dir = host.prefix.join("gui-test");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let dump = dir.join("ui.json");
    let log = dir.join("wizard.log");
    let exe = host.bin.join(SETUP).to_string_lossy().to_string();
    let mut cmd = host.command(&[
        exe.as_str(),
        "--config",
        r"C:\ProgramData\ad-sync\agent.toml",
    ]);
    let out = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}"));
    let err = out.try_clone().unwrap_or_else(|e| panic!("{e}"));
    cmd.env("AD_SYNC_LOG", "info")
        .env("AD_SYNC_SETUP_UI_DUMP", win_path(&dump))
        .env("AD_SYNC_DNS_SERVER", testbed::DNS_SERVER)
        .env_remove("WGPU_BACKEND")
        .stdout(out)
        .stderr(err);
    // The CA files the administrator types, copied to fixed places on this server's C: drive:
    // their paths are on the pages (Install says where each CA came from), and a path under
    // the checkout (its folder, the test bed's PID) would change the pictures from machine to
    // machine: a longer one wraps a line and moves the whole page (a CI clone at
    // /check/work/main did).
    let copy_ca = |from: &Path, name: &str| {
        let to = host.c(&format!(r"testbed\{name}"));
        std::fs::create_dir_all(to.parent().unwrap_or(Path::new("/")))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::copy(from, &to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        format!(r"C:\testbed\{name}")
    };
    let dc_ca = copy_ca(&support::bed().dc1.ca_file, "dc-ca.pem");
    let cloud_ca = copy_ca(&cloud.ca, "cloud-ca.pem");
    let wizard = cmd.spawn().unwrap_or_else(|e| panic!("{e}"));
    let shots = support::wine::target_dir().join("screenshots/windows");
    let mut w = Window::attach(
        wizard,
        &x.display,
        dump,
        log.clone(),
        shots,
        Duration::from_secs(180),
    );
    let mut differ = Vec::new();
    // Compares a page's picture with its snapshot, painting over first the nodes `dynamic`
    // names: what depends on the run (the testbed's certificate, ports, paths, ids), never the
    // page's own words. A painted area stops above the footer's buttons, which are compared.
    let mut check = |name: &str, shot: &Path, s: &Screen, dynamic: &dyn Fn(&str, &str) -> bool| {
        let footer = ["< Back", "Cancel", "Close"]
            .iter()
            .filter_map(|b| s.get(b).and_then(|n| n["y0"].as_f64()))
            .fold(f64::MAX, f64::min)
            - 6.0;
        let masks: Vec<Value> = s
            .nodes
            .iter()
            .filter(|n| {
                n["y0"].as_f64().unwrap_or(0.0) < footer
                    && dynamic(
                        n["name"].as_str().unwrap_or_default(),
                        n["value"].as_str().unwrap_or_default(),
                    )
            })
            .map(|n| {
                let mut n = n.clone();
                let y1 = n["y1"].as_f64().unwrap_or(0.0).min(footer);
                n["y1"] = serde_json::json!(y1);
                n
            })
            .collect();
        if let Some(d) = compare_with_snapshot(name, shot, &masks) {
            differ.push(d);
        }
    };
    let none = |_: &str, _: &str| false;
    let run_paths = |t: &str, v: &str| {
        ["Z:\\", "localhost:", "ADS1-", "agt-"]
            .iter()
            .any(|d| t.contains(d) || v.contains(d))
    };

    // 1 Welcome
    w.wait("the Welcome page", |s| s.heading().contains("Step 1 of 13"));
    let (s, shot) = w.next("welcome");
    check("01-welcome", &shot, &s, &none);
    // 2 Destination folder: the default under Program Files.
    w.wait("the folder check", |s| {
        s.has("will be created by the install step")
    });
    let (s, shot) = w.next("folder");
    check("02-folder", &shot, &s, &none);
    // 3 Server type
    w.click("Member server");
    w.wait("the pick", |s| s.enabled("Next >"));
    let (s, shot) = w.next("server-type");
    check("03-server-type", &shot, &s, &none);
    // 4 Domain controller: the domain's DNS is searched through Windows' own sockets.
    w.type_into("Domain to search", "example.com");
    w.click("Find domain controllers");
    w.wait("discovery", |s| {
        s.has("dc1.example.com (priority 0, weight 100)")
            && s.value("Domain controller (FQDN)").as_deref() == Some(testbed::DC1_HOST)
            && s.enabled("Next >")
            && !s.has("Failed:")
    });
    let (s, shot) = w.next("domain-controller");
    check("04-domain-controller", &shot, &s, &none);
    // 5 Connection security: the DC's certificate through the relay (see `WinNet`), its CA
    // trusted from a file.
    w.type_into("Port (empty for the default)", &net.dc.port.to_string());
    w.type_into("Trust this CA file (optional)", &dc_ca);
    w.wait("the certificate", |s| {
        s.has("SHA-256") && s.enabled("Next >")
    });
    let (s, shot) = w.next("connection");
    // The certificate is the testbed's, made at each provisioning; the relay's port is the run's.
    let port = net.dc.port.to_string();
    check("05-connection", &shot, &s, &|t, v| {
        run_paths(t, v) || v == port || t.contains(" UTC") || t.matches(':').count() >= 10
    });
    // 6 Service account: the logon is tried when the password field is left.
    w.type_into(
        "Service account",
        &format!("EXAMPLE\\{}", testbed::accounts::GOOD),
    );
    w.type_into("Password", testbed::SVC_PASSWORD);
    w.key("Tab");
    w.wait("the logon", |s| {
        s.has("checks passed") && s.enabled("Next >")
    });
    let (s, shot) = w.next("account");
    check("06-account", &shot, &s, &none);
    // 7 Root User container: picked in the tree.
    w.wait("the tree", |s| s.get("Staff").is_some());
    w.click("Staff");
    w.wait("the pick", |s| {
        s.value("Root User container").as_deref() == Some("OU=Staff,DC=example,DC=com")
            && s.enabled("Next >")
    });
    let (s, shot) = w.next("root-dn");
    check("07-root-dn", &shot, &s, &none);
    // 8 Connect key
    w.type_into("Cloud URL", &net.cloud_url());
    w.type_into("Cloud CA file (optional)", &cloud_ca);
    w.type_into("Connect key", &key);
    w.wait("the key", |s| {
        s.has("Format and checksum are right") && s.enabled("Next >") && !s.has("Failed:")
    });
    let (s, shot) = w.next("connect-key");
    check("08-connect-key", &shot, &s, &|t, v| {
        run_paths(t, v) || (t == "Connect key" && v.is_empty())
    });
    // 9 Sync group
    w.wait("the groups", |s| s.get("Cloud Groups").is_some());
    w.click("Cloud Groups");
    w.wait("the pick", |s| {
        s.value("Sync group").as_deref() == Some("CN=Cloud Groups,OU=Staff,DC=example,DC=com")
            && s.enabled("Next >")
    });
    let (s, shot) = w.next("sync-group");
    check("09-sync-group", &shot, &s, &none);
    // 10 Sync policies: the defaults.
    w.wait("the policies", |s| {
        s.has("Disable the AD account (default)") && s.enabled("Next >")
    });
    let (s, shot) = w.next("policies");
    check("10-policies", &shot, &s, &none);
    // 11 Review, then Install.
    w.wait("the review", |s| s.enabled("Install") && !s.has("Failed:"));
    let (s, shot) = w.settle_and_record("review");
    check("11-review", &shot, &s, &|t, v| {
        run_paths(t, v) || t.starts_with("LDAPS, port")
    });
    w.click("Install");
    // 12 Install: the service registered with the Service Control Manager and started.
    w.wait("the install", |s| {
        s.heading().contains("Install") && s.enabled("Next >")
    });
    let (s, shot) = w.settle_and_record("install");
    assert!(!s.has("Failed:"), "{}", s.names().join("\n"));
    check("12-install", &shot, &s, &run_paths);
    w.click("Next >");
    // 13 Finish
    let s = w.wait("Finish", |s| s.heading().contains("Step 13 of 13: Finish"));
    assert!(
        s.has("The ad-sync agent is installed."),
        "{}",
        s.names().join("\n")
    );
    let (s, shot) = w.settle_and_record("finish");
    // What the cloud says and the first sync's panel change as the agent runs: painted over
    // from "As the cloud sees it" down.
    let at = |n: &Value, k: &str| n[k].as_f64().unwrap_or(f64::MAX);
    let cloud_part = s
        .get("As the cloud sees it")
        .map(|n| (at(n, "x0"), at(n, "y0")))
        .unwrap_or((f64::MAX, f64::MAX));
    // In the page's column (not the step list beside it), below that heading.
    let below = |t: &str| {
        s.nodes.iter().any(|n| {
            n["name"].as_str() == Some(t)
                && at(n, "x0") >= cloud_part.0 - 1.0
                && at(n, "y0") > cloud_part.1
        })
    };
    check("13-finish", &shot, &s, &|t, v| run_paths(t, v) || below(t));
    w.click("Close");
    let status = w.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "the wizard exited with {status}");
    assert_eq!(w.page, 13, "a picture of each page");

    let log = std::fs::read_to_string(&log).unwrap_or_default();
    // Wine's Direct3D 12 is tried first and refused by the probe, not by a crash.
    assert!(
        log.contains("renderer: Direct3D 12 cannot draw here"),
        "{log}"
    );
    assert!(
        log.contains("renderer: Vulkan on") && log.contains("works"),
        "{log}"
    );
    // No secret reached the wizard's log or the screen's text.
    let dump = std::fs::read_to_string(&w.dump).unwrap_or_default();
    for (what, text) in [("log", &log), ("screen", &dump)] {
        assert!(
            !text.contains(testbed::SVC_PASSWORD) && !text.contains(&key),
            "a secret is in the wizard's {what}"
        );
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    drop(w);
    drop(x);
}

/// The proxy the wizard proposes on Windows, read through WinHTTP as Windows keeps it: the
/// administrator's Internet Options (`...\Internet Settings\Connections`
/// `DefaultConnectionSettings`), and the machine's WinHTTP proxy (`WinHttpSettings`, what
/// `netsh winhttp set proxy` writes), which wins because services use it. The binary layout is
/// the one both Windows and Wine's winhttp read: a header of three DWORDs (size or version,
/// a counter (Wine's winhttp takes WinHttpSettings only with 0 there), flags with
/// PROXY_TYPE_PROXY), then the length-prefixed proxy string.
#[test]
fn the_windows_build_finds_the_proxy_in_internet_options_and_winhttp() {
    let host = WinHost::start("proxy");
    let found = || {
        let out = host.exe(SETUP, &["find-proxy", "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        json(&out)
    };
    assert_eq!(found()["proxy"], Value::Null, "nothing set");
    let blob = |header: u32, counter: u32, proxy: &str| {
        let mut b = Vec::new();
        for v in [header, counter, 3, proxy.len() as u32] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(proxy.as_bytes());
        b.extend_from_slice(&[0; 12]);
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    };
    let set = |key: &str, name: &str, data: &str| {
        let out = host.reg_add(&[key, "/v", name, "/t", "REG_BINARY", "/d", data, "/f"]);
        assert!(out.status.success(), "reg add: {}", text(&out));
    };
    set(
        r"HKCU\Software\Microsoft\Windows\CurrentVersion\Internet Settings\Connections",
        "DefaultConnectionSettings",
        &blob(0x46, 1, "http=a.corp:80;https=proxy.corp.example:3128"),
    );
    let v = found();
    assert_eq!(v["proxy"], "http://proxy.corp.example:3128", "{v}");
    assert!(
        v["source"]
            .as_str()
            .is_some_and(|s| s.contains("Internet Options")),
        "{v}"
    );
    set(
        r"HKLM\Software\Microsoft\Windows\CurrentVersion\Internet Settings\Connections",
        "WinHttpSettings",
        &blob(0x18, 0, "machine.corp.example:8080"),
    );
    let v = found();
    assert_eq!(v["proxy"], "http://machine.corp.example:8080", "{v}");
    assert!(
        v["source"].as_str().is_some_and(|s| s.contains("WinHTTP")),
        "{v}"
    );
}
