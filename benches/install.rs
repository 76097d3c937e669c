//! `cargo bench --bench install`: a full unattended install (`ad-sync-setup install --answers F
//! --prefix DIR --no-start`: every check against the local Samba DC and the reference cloud,
//! then every step, enrollment included), 10 times, each into a fresh prefix with a fresh key.
//! Prints each wall time and the median. Target: median under 3 s.

#[allow(dead_code)]
#[path = "../tests/support/bins.rs"]
mod bins;
#[allow(dead_code)]
#[path = "../tests/support/cloud.rs"]
mod cloud;
#[path = "../tests/support/postgres.rs"]
mod postgres;
#[path = "../tests/support/testbed.rs"]
mod testbed;

use std::process::Command;

/// The cloud support module stops its servers at exit through this; the bench's own `Drop`
/// already does, so nothing more is needed here.
fn stop_at_exit(_pids: impl IntoIterator<Item = u32>) {}
use std::time::Instant;

const RUNS: usize = 10;
/// The installer, with the agent it installs built beside it.
fn setup_bin() -> &'static str {
    bins::setup_with_agent()
}

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-install");
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::create_dir_all(&root);
    let mut bed = match testbed::Testbed::start(&root) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot start the test domain: {e}");
            std::process::exit(2);
        }
    };
    let server = cloud::CloudServer::start("bench", &[]);
    server.admin_ok(&["domain", "add", "DC=example,DC=com"]);
    let mut times = Vec::new();
    for run in 0..RUNS {
        let dir = root.join(format!("run-{run}"));
        let _ = std::fs::create_dir_all(&dir);
        let key = server.issue_key("DC=example,DC=com", None);
        let _ = std::fs::write(dir.join("svc.pw"), testbed::SVC_PASSWORD);
        let _ = std::fs::write(dir.join("key.txt"), &key);
        let text = format!(
            "version = 1\n[server]\ntype = \"member\"\ndc_host = \"{}\"\n[ldap]\nca_file = '{}'\n\
             [directory]\nroot_user_dn = 'OU=Staff;DC=example;DC=com'\n\
             sync_group_dn = 'CN=Cloud Groups;OU=Staff;DC=example;DC=com'\n\
             [service_account]\nusername = 'EXAMPLE\\{}'\npassword_file = \"svc.pw\"\n\
             [cloud]\nurl = '{}'\nca_file = '{}'\nconnect_key_file = \"key.txt\"\n",
            testbed::DC1_HOST,
            bed.dc1.ca_file.display(),
            testbed::accounts::GOOD,
            server.url,
            server.ca.display()
        );
        let answers = dir.join("answers.toml");
        let _ = std::fs::write(&answers, text);
        let started = Instant::now();
        let out = Command::new(setup_bin())
            .args(["install", "--no-start", "--json", "--answers"])
            .arg(&answers)
            .arg("--prefix")
            .arg(dir.join("root"))
            .output();
        let took = started.elapsed().as_secs_f64() * 1000.0;
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                eprintln!(
                    "run {run}: install failed: {}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                bed.stop();
                std::process::exit(1);
            }
            Err(e) => {
                eprintln!("run {run}: {e}");
                bed.stop();
                std::process::exit(1);
            }
        }
        println!("install run {run}: {took:.0} ms");
        times.push(took);
    }
    bed.stop();
    times.sort_by(f64::total_cmp);
    let median = (times[RUNS / 2 - 1] + times[RUNS / 2]) / 2.0;
    println!(
        "install median {median:.0} ms, min {:.0} ms, max {:.0} ms over {RUNS} runs (target < 3000 ms)",
        times[0],
        times[RUNS - 1]
    );
}
