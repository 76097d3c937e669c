//! `cargo bench --bench windows`: the Windows build under Wine against the Linux build, on the
//! same Samba DC and reference cloud in the same run.
//!
//! - `check`: 10 runs of each whole process (`ad-sync-setup check --answers F`, every check,
//!   LDAPS with `[ldap] ca_file`, the cloud with `[cloud] ca_file`), median wall time. The
//!   Windows build reaches the DC and the cloud through the test bed's TLS relays (see
//!   `tests/support/wine.rs`), so the Linux build is timed both directly and through the same
//!   relays; the ratio that measures the Windows build is the one over the same path.
//! - `install`: 5 full unattended installs under Wine (`install --answers F --no-start`, real
//!   Windows paths, the SCM, enrollment with a fresh key), each followed by an uninstall that is
//!   not timed; median wall time.
//!
//! Needs what the tests need (root, Samba, wine64) and the release Windows build
//! (`cargo build --release --target x86_64-pc-windows-gnu --bins`), so both sides are release.

#[allow(dead_code)]
#[path = "../tests/support/bins.rs"]
mod bins;
#[allow(dead_code)]
#[path = "../tests/support/cloud.rs"]
mod cloud;
#[path = "../tests/support/testbed.rs"]
mod testbed;
#[path = "../tests/support/wine.rs"]
mod wine;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The cloud support module stops its servers at exit through this; the bench's own `Drop`
/// already does.
fn stop_at_exit(_pids: impl IntoIterator<Item = u32>) {}

const SETUP: &str = env!("CARGO_BIN_EXE_ad-sync-setup");
const DOMAIN: &str = "DC=example,DC=com";
const CHECKS: usize = 10;
const INSTALLS: usize = 5;

struct Paths {
    ca: String,
    cloud_ca: String,
    port: Option<u16>,
    cloud_url: String,
}

fn answers(dir: &Path, p: &Paths, key: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("svc.pw"), testbed::SVC_PASSWORD).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("key.txt"), key).unwrap_or_else(|e| panic!("{e}"));
    let port = p.port.map(|n| format!("port = {n}\n")).unwrap_or_default();
    let text = format!(
        "version = 1\n[server]\ntype = \"member\"\ndc_host = \"{}\"\n[ldap]\n{port}ca_file = '{}'\n\
         [directory]\nroot_user_dn = 'OU=Staff;DC=example;DC=com'\n\
         sync_group_dn = 'CN=Cloud Groups;OU=Staff;DC=example;DC=com'\n\
         [service_account]\nusername = 'EXAMPLE\\{}'\npassword_file = \"svc.pw\"\n\
         [cloud]\nurl = '{}'\nca_file = '{}'\nconnect_key_file = \"key.txt\"\n",
        testbed::DC1_HOST,
        p.ca,
        testbed::accounts::GOOD,
        p.cloud_url,
        p.cloud_ca,
    );
    let path = dir.join("answers.toml");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    path
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn timed(mut run: impl FnMut() -> bool, n: usize, what: &str) -> Duration {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        if !run() {
            eprintln!("{what} failed: the bench needs the good path");
            std::process::exit(1);
        }
        times.push(t.elapsed());
    }
    median(times)
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-windows");
    std::fs::remove_dir_all(&root).ok();
    std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("{e}"));
    let mut bed = match testbed::Testbed::start(&root) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot start the test domain: {e}");
            std::process::exit(2);
        }
    };
    let server = cloud::CloudServer::start_for_wine("bench-windows", &[]);
    server.admin_ok(&["domain", "add", DOMAIN]);
    let release = wine::target_dir().join("x86_64-pc-windows-gnu/release");
    if !release.join("ad-sync-setup.exe").is_file() {
        eprintln!(
            "build the release Windows binaries first: cargo build --release --target x86_64-pc-windows-gnu --bins"
        );
        std::process::exit(2);
    }
    let host = wine::WinHost::start_from("bench", &release);
    let tls = bed.dc1.dir.join("private/tls");
    let dc_relay = wine::TlsRelay::start(
        &tls.join("cert.pem"),
        &tls.join("key.pem"),
        "127.0.0.1:636".parse().unwrap_or_else(|e| panic!("{e}")),
        testbed::DC1_HOST,
        &bed.dc1.ca_file,
    );
    let cloud_relay = wine::TlsRelay::start(
        &server.tls.join("server.pem"),
        &server.tls.join("server.key"),
        std::net::SocketAddr::from(([127, 0, 0, 1], server.port())),
        "localhost",
        &server.ca,
    );
    let key = server.issue_key(DOMAIN, None);
    let direct = answers(
        &root.join("linux-direct"),
        &Paths {
            ca: bed.dc1.ca_file.display().to_string(),
            cloud_ca: server.ca.display().to_string(),
            port: None,
            cloud_url: server.url.replace("127.0.0.1", "localhost"),
        },
        &key,
    );
    let relayed = Paths {
        ca: bed.dc1.ca_file.display().to_string(),
        cloud_ca: server.ca.display().to_string(),
        port: Some(dc_relay.port),
        cloud_url: format!("https://localhost:{}", cloud_relay.port),
    };
    let linux_relayed = answers(&root.join("linux-relayed"), &relayed, &key);
    let win_paths = Paths {
        ca: wine::win_path(&bed.dc1.ca_file),
        cloud_ca: wine::win_path(&server.ca),
        ..relayed
    };
    let windows = answers(&root.join("windows"), &win_paths, &key);

    let linux_check = |answers: &Path| {
        Command::new(SETUP)
            .args(["check", "--answers"])
            .arg(answers)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let win_answers = wine::win_path(&windows);
    let win_check = || {
        host.exe("ad-sync-setup.exe", &["check", "--answers", &win_answers])
            .status
            .success()
    };
    // One of each first: caches, Wine's first start of a program.
    linux_check(&direct);
    win_check();
    let l_direct = timed(|| linux_check(&direct), CHECKS, "Linux check");
    let l_relayed = timed(
        || linux_check(&linux_relayed),
        CHECKS,
        "Linux check (relayed)",
    );
    let w = timed(win_check, CHECKS, "Windows check under Wine");
    let startup = timed(
        || {
            host.exe(
                "ad-sync-setup.exe",
                &["validate-dn", "CN=Users;DC=example;DC=com"],
            )
            .status
            .success()
        },
        CHECKS,
        "Windows validate-dn under Wine",
    );

    let mut installs = Vec::new();
    for run in 0..INSTALLS {
        let key = server.issue_key(DOMAIN, None);
        let answers = answers(&root.join(format!("install-{run}")), &win_paths, &key);
        let a = wine::win_path(&answers);
        let t = Instant::now();
        let out = host.exe(
            "ad-sync-setup.exe",
            &["install", "--answers", &a, "--no-start"],
        );
        installs.push(t.elapsed());
        if !out.status.success() {
            eprintln!(
                "install under Wine failed:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
            std::process::exit(1);
        }
        let out = host.exe("ad-sync-setup.exe", &["uninstall"]);
        if !out.status.success() {
            eprintln!("uninstall under Wine failed");
            std::process::exit(1);
        }
    }
    let install = median(installs.clone());

    println!(
        "Windows build under Wine vs Linux build, same Samba DC and reference cloud, median of {CHECKS}:"
    );
    println!(
        "  check, Linux, direct:                  {:7.1} ms",
        ms(l_direct)
    );
    println!(
        "  check, Linux, through the relays:      {:7.1} ms",
        ms(l_relayed)
    );
    println!("  check, Windows (Wine), the relays:     {:7.1} ms", ms(w));
    println!(
        "  ratio Windows/Linux over the same path: {:.2} (against Linux direct: {:.2})",
        ms(w) / ms(l_relayed),
        ms(w) / ms(l_direct)
    );
    println!(
        "  of which starting a Windows program under Wine (validate-dn, no network): {:.1} ms",
        ms(startup)
    );
    println!(
        "install under Wine (real Windows paths, SCM, enrollment), {INSTALLS} runs: median {:.0} ms (runs: {})",
        ms(install),
        installs
            .iter()
            .map(|d| format!("{:.0}", ms(*d)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    drop(dc_relay);
    drop(cloud_relay);
    drop(host);
    drop(server);
    bed.stop();
}
