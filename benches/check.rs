//! `cargo bench --bench check`: the full `check` against the local Samba DC, 20 times; prints
//! the median wall time and the LDAP operations and connections of each run.
//! Target: median under 300 ms on loopback, one connection.

#[path = "../tests/support/testbed.rs"]
mod testbed;

use std::time::{Duration, Instant};

const RUNS: usize = 20;

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-check");
    let _ = std::fs::create_dir_all(&root);
    let mut bed = match testbed::Testbed::start(&root) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot start the test domain: {e}");
            std::process::exit(2);
        }
    };
    let dir = root.join("answers");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("svc.pw"), testbed::SVC_PASSWORD);
    let text = format!(
        "version = 1\n[server]\ntype = \"member\"\ndc_host = \"{}\"\n[ldap]\nca_file = '{}'\n\
         [directory]\nroot_user_dn = 'OU=Staff;DC=example;DC=com'\n\
         sync_group_dn = 'CN=Cloud Groups;OU=Staff;DC=example;DC=com'\n\
         [service_account]\nusername = 'EXAMPLE\\{}'\npassword_file = \"svc.pw\"\n",
        testbed::DC1_HOST,
        bed.dc1.ca_file.display(),
        testbed::accounts::GOOD
    );
    let answers = match ad_sync::answers::Answers::parse(&text, dir) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("answers: {e}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(2);
        }
    };
    let mut times: Vec<Duration> = Vec::with_capacity(RUNS);
    let mut last = None;
    for _ in 0..RUNS {
        let t = Instant::now();
        let report = rt.block_on(ad_sync::preflight::run(&answers));
        times.push(t.elapsed());
        if report.any_failed() {
            eprintln!("{}", ad_sync::cli::render_text(&report));
            eprintln!("a check failed: the bench needs the good path");
            bed.stop();
            std::process::exit(1);
        }
        last = Some(report.stats);
    }
    bed.stop();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let stats = last.unwrap_or_default();
    println!("check against the local Samba AD DC, {RUNS} runs (LDAPS, full preflight)");
    println!(
        "  wall time: median {:.1} ms, min {:.1} ms, max {:.1} ms",
        ms(times[RUNS / 2]),
        ms(times[0]),
        ms(times[RUNS - 1])
    );
    println!(
        "  per run: {} LDAP connection(s), {} LDAP operations",
        stats.connections, stats.operations
    );
}
