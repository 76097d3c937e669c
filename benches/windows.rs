//! `cargo bench --bench windows`: the Windows build under Wine against the Linux build, on the
//! same Samba DC and reference cloud in the same run.
//!
//! - `check`: 10 runs of each whole process (`ad-sync-setup check --answers F`, every check,
//!   LDAPS with `[ldap] ca_file`, the cloud with `[cloud] ca_file`), median wall time. Both
//!   builds reach the DC and the cloud directly (the Windows build with the test bed's secur32
//!   stand-in, `tests/support/wine/secur32.c`).
//! - `install`: 5 full unattended installs under Wine (`install --answers F --no-start`, real
//!   Windows paths, the SCM, enrollment with a fresh key), each followed by an uninstall that is
//!   not timed; median wall time.
//! - `MSI`: the release MSI's size, and `msiexec /i ad-sync.msi /qn ANSWERS=F` to the agent
//!   service running (3 runs, median), each removed again with `msiexec /x`.
//! - `first sync`: each build's agent (`run --once`, a fresh state) creating a cloud of
//!   `BENCH_WIN_USERS` (2,000) users in AD, each in its own OU under OU=Staff and enrolled with
//!   its own cloud, on the same DC, one after the other.
//!
//! Needs what the tests need (root, Samba, wine64) and the release Windows build
//! (`cargo build --release --target x86_64-pc-windows-gnu --workspace --bins --lib`), so both sides are release.

#[allow(dead_code)]
#[path = "../tests/support/bins.rs"]
mod bins;
#[allow(dead_code)]
#[path = "../tests/support/cloud.rs"]
mod cloud;
#[path = "../tests/support/postgres.rs"]
mod postgres;
#[allow(dead_code)]
mod support;
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
    // lmdb, as the agent bench: with tdb each add costs more as the database grows, which would
    // charge whichever build's first sync runs second for the first one's 2,000 users.
    // SAFETY: set before any thread is started.
    unsafe {
        std::env::set_var("TESTBED_BACKEND_STORE", "mdb");
    }
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
            "build the release Windows binaries first: cargo build --release --target x86_64-pc-windows-gnu --workspace --bins --lib"
        );
        std::process::exit(2);
    }
    let host = wine::WinHost::start_from("bench", &release);
    let key = server.issue_key(DOMAIN, None);
    let direct = Paths {
        ca: bed.dc1.ca_file.display().to_string(),
        cloud_ca: server.ca.display().to_string(),
        port: None,
        cloud_url: format!("https://localhost:{}", server.port()),
    };
    let linux = answers(&root.join("linux"), &direct, &key);
    let win_paths = Paths {
        ca: wine::win_path(&bed.dc1.ca_file),
        cloud_ca: wine::win_path(&server.ca),
        ..direct
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
    linux_check(&linux);
    win_check();
    let l = timed(|| linux_check(&linux), CHECKS, "Linux check");
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
    let (msi_bytes, msi_runs) = msi_silent_installs(&root, &server, &host, &win_paths);

    println!(
        "Windows build under Wine vs Linux build, same Samba DC and reference cloud, median of {CHECKS}:"
    );
    println!("  check, Linux:            {:7.1} ms", ms(l));
    println!("  check, Windows (Wine):   {:7.1} ms", ms(w));
    println!("  ratio Windows/Linux:     {:.2}", ms(w) / ms(l));
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
    println!(
        "MSI (release, signed with the test certificate): {:.1} MB; msiexec /i /qn ANSWERS= to the service running under Wine, {} runs: median {:.0} ms (runs: {})",
        msi_bytes as f64 / 1_000_000.0,
        msi_runs.len(),
        ms(median(msi_runs.clone())),
        msi_runs
            .iter()
            .map(|d| format!("{:.0}", ms(*d)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let (w_sync, l_sync, users) = first_syncs(&root, &mut bed, &host);
    println!(
        "first sync of {users} cloud users into AD (run --once, fresh state, same DC): Windows (Wine) {:.1} s, Linux {:.1} s, ratio {:.2}",
        w_sync.as_secs_f64(),
        l_sync.as_secs_f64(),
        w_sync.as_secs_f64() / l_sync.as_secs_f64()
    );
    drop(host);
    drop(server);
    bed.stop();
}

/// The release MSI's size, and the wall time of `msiexec /i ad-sync.msi /qn ANSWERS=F` until the
/// SCM reports the agent service running (programs, checks, config, enrollment, service), each
/// followed by an untimed `msiexec /x`. The test bed's secur32 stand-in is put beside the
/// installed programs first, as beside `C:\adsync-build` (`tests/support/wine/secur32.c`).
fn msi_silent_installs(
    root: &Path,
    server: &cloud::CloudServer,
    host: &wine::WinHost,
    win_paths: &Paths,
) -> (u64, Vec<Duration>) {
    let out_dir = root.join("msi");
    let built = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/msi/build"))
        .args(["--profile", "release", "--no-build", "--out"])
        .arg(&out_dir)
        .arg("--test-sign")
        .arg(out_dir.join("signing"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("dist/msi/build: {e}"));
    if !built.status.success() {
        eprintln!(
            "dist/msi/build failed (the release build needs --bins: ad-sync-setup-console too):\n{}",
            String::from_utf8_lossy(&built.stderr)
        );
        std::process::exit(1);
    }
    let msi = PathBuf::from(
        String::from_utf8_lossy(&built.stdout)
            .trim()
            .lines()
            .last()
            .unwrap_or_default(),
    );
    let bytes = std::fs::metadata(&msi).map(|m| m.len()).unwrap_or(0);
    let msi_win = wine::win_path(&msi);
    let mut runs = Vec::new();
    for run in 0..3 {
        let installed = host.c(r"Program Files\ad-sync");
        std::fs::create_dir_all(&installed).unwrap_or_else(|e| panic!("{e}"));
        std::fs::copy(host.bin.join("secur32.dll"), installed.join("secur32.dll"))
            .unwrap_or_else(|e| panic!("{e}"));
        let key = server.issue_key(DOMAIN, None);
        let answers = answers(&root.join(format!("msi-{run}")), win_paths, &key);
        let t = Instant::now();
        let out = host.wine(
            &[
                "msiexec",
                "/i",
                &msi_win,
                "/qn",
                &format!("ANSWERS={}", wine::win_path(&answers)),
            ],
            Duration::from_secs(600),
        );
        let running = out.status.success()
            && (0..600).any(|_| {
                let q = host.sc(&["query", "ad-sync-agent"]);
                let up = String::from_utf8_lossy(&q.stdout).contains("RUNNING");
                if !up {
                    std::thread::sleep(Duration::from_millis(100));
                }
                up
            });
        let took = t.elapsed();
        if !running {
            eprintln!(
                "the MSI did not install and start the agent under Wine:\n{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(host.c(r"ProgramData\ad-sync\logs\setup.log"))
                    .unwrap_or_default()
            );
            std::process::exit(1);
        }
        runs.push(took);
        let out = host.wine(
            &["msiexec", "/x", &msi_win, "/qn"],
            Duration::from_secs(600),
        );
        if !out.status.success() {
            eprintln!("msiexec /x failed under Wine");
            std::process::exit(1);
        }
        std::fs::remove_dir_all(host.c(r"Program Files\ad-sync")).ok();
    }
    (bytes, runs)
}

/// Each build's agent creating a cloud of `BENCH_WIN_USERS` users in its own OU: (Windows,
/// Linux, users).
fn first_syncs(
    root: &Path,
    bed: &mut testbed::Testbed,
    host: &wine::WinHost,
) -> (Duration, Duration, usize) {
    let users = support::env_usize("BENCH_WIN_USERS", 2_000);
    let mut times = Vec::new();
    for side in ["Windows", "Linux"] {
        let ou = format!("OU=Bench {side} Sync,{}", testbed::OU_STAFF);
        let group = format!("CN=Bench {side} Group,{ou}");
        let made = support::ldap_add(
            bed,
            &ou,
            vec![("objectClass", vec!["top", "organizationalUnit"])],
        )
        .and_then(|_| {
            support::ldap_add(
                bed,
                &group,
                vec![
                    ("objectClass", vec!["top", "group"]),
                    (
                        "sAMAccountName",
                        vec![if side == "Linux" {
                            "bench-l-sync"
                        } else {
                            "bench-w-sync"
                        }],
                    ),
                    ("groupType", vec!["-2147483646"]),
                ],
            )
        });
        if let Err(e) = made {
            support::fail(bed, e);
        }
        // Its own cloud: two agents of one cloud domain would elect one primary between them.
        let cloud = cloud::CloudServer::start_for_wine(&format!("bench-sync-{side}"), &[]);
        cloud.admin_ok(&["domain", "add", DOMAIN]);
        let filled = ad_sync_cloud::server::store::Store::open(&cloud.db)
            .map_err(|e| e.to_string())
            .and_then(|store| {
                let d = store.domain_id(Some(DOMAIN)).map_err(|e| e.to_string())?;
                let tag = &side[..1].to_ascii_lowercase();
                for i in 0..users {
                    store
                        .user_add(
                            d,
                            &format!("b{tag}{i:05}"),
                            "Bench",
                            &format!("Sync{i}"),
                            None,
                        )
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            });
        if let Err(e) = filled {
            support::fail(bed, e);
        }
        let key = cloud.issue_key(DOMAIN, None);
        let dir = root.join(format!("sync-{side}"));
        let windows = side == "Windows";
        let p = Paths {
            ca: if windows {
                wine::win_path(&bed.dc1.ca_file)
            } else {
                bed.dc1.ca_file.display().to_string()
            },
            cloud_ca: if windows {
                wine::win_path(&cloud.ca)
            } else {
                cloud.ca.display().to_string()
            },
            port: None,
            cloud_url: format!("https://localhost:{}", cloud.port()),
        };
        let file = answers(&dir, &p, &key);
        let text = std::fs::read_to_string(&file)
            .unwrap_or_default()
            // The group's line first: it holds the root's text too.
            .replace("CN=Cloud Groups;OU=Staff;DC=example;DC=com", &group)
            .replace("OU=Staff;DC=example;DC=com", &ou);
        std::fs::write(&file, text).unwrap_or_else(|e| panic!("{e}"));
        let took = if windows {
            let out = host.exe(
                "ad-sync-setup.exe",
                &["install", "--answers", &wine::win_path(&file), "--no-start"],
            );
            if !out.status.success() {
                support::fail(
                    bed,
                    format!(
                        "install under Wine failed:\n{}",
                        String::from_utf8_lossy(&out.stdout)
                    ),
                );
            }
            let agent = host
                .bin
                .join("ad-sync-agent.exe")
                .to_string_lossy()
                .to_string();
            let t = Instant::now();
            let out = host.wine(
                &[
                    &agent,
                    "run",
                    "--once",
                    "--config",
                    r"C:\ProgramData\ad-sync\agent.toml",
                    "--state-dir",
                    r"C:\bench-state",
                ],
                Duration::from_secs(1800),
            );
            let took = t.elapsed();
            if !out.status.success() {
                support::fail(
                    bed,
                    format!(
                        "the Windows agent's first sync failed:\n{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    ),
                );
            }
            took
        } else {
            let prefix = dir.join("root");
            let (_, _, ok, out) = support::measured(
                Command::new(SETUP)
                    .args(["install", "--no-start", "--answers"])
                    .arg(&file)
                    .arg("--prefix")
                    .arg(&prefix),
            );
            if !ok {
                support::fail(bed, format!("install failed: {out}"));
            }
            let (took, _, ok, out) = support::measured(
                Command::new(bins::agent())
                    .args(["run", "--once", "--log-dir", "-", "--config"])
                    .arg(prefix.join("etc/ad-sync/agent.toml"))
                    .arg("--state-dir")
                    .arg(dir.join("state")),
            );
            if !ok {
                support::fail(bed, format!("the Linux agent's first sync failed: {out}"));
            }
            took
        };
        times.push(took);
        drop(cloud);
    }
    (times[0], times[1], users)
}
