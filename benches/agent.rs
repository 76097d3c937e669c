//! `cargo bench --bench agent`: the agent syncing a large directory into a fresh Samba DC.
//!
//! The cloud gets 10,000 users and 500 groups (each user in one group, 50 groups nested in
//! others). Printed:
//! - `ldapadd` of the equivalent LDIF (the same users with the same attributes, the groups with
//!   their members inline), bound as the same service account, into another OU of the same DC,
//!   first. The DC uses lmdb (`--backend-store=mdb`): with tdb each add gets dearer as the
//!   database grows, so the second load would pay for the first;
//! - the agent's first sync of all of it (`run --once`), wall time, and the ratio to ldapadd
//!   (target at most 1.0);
//! - a no-op resync of the same 10,000 (`run --once --resync`; target under 2 s), and what the
//!   state check and the orphan scan add to it (target at most 10%; the scan reads the whole
//!   containers once per state, then only what changed since the last one);
//! - the agent's peak RSS while syncing, and its RSS idle in `run` after its start-up resync
//!   (target under 10 MB idle);
//! - the release binary's size (target under 15 MB).
//!
//! `BENCH_USERS` and `BENCH_GROUPS` change the sizes (for a quick look). `BENCH_BASELINE=0`
//! leaves out the two `ldapadd` loads (for the agent's memory at a larger size, where they
//! take longer than the agent). `BENCH_MAPS=1` prints where the idle agent's resident memory
//! is, by mapping.

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

use support::{fail, ldap_add, measured, stop_at_exit};

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The installer, with the agent it installs built beside it.
fn setup_bin() -> &'static str {
    bins::setup_with_agent()
}
fn agent_bin() -> &'static str {
    bins::agent()
}
const DOMAIN: &str = "DC=example,DC=com";

fn main() {
    let users = support::env_usize("BENCH_USERS", 10_000);
    let groups = support::env_usize("BENCH_GROUPS", 500).max(1);
    let (root, mut bed, server) = support::start("bench-agent", DOMAIN);

    // ---- the directory in the cloud ----------------------------------------------------------
    let started = Instant::now();
    let store = match ad_sync_cloud::server::store::Store::open(&server.db) {
        Ok(s) => s,
        Err(e) => fail(&mut bed, e.to_string()),
    };
    let d = match store.domain_id(None) {
        Ok(d) => d,
        Err(e) => fail(&mut bed, e.to_string()),
    };
    for i in 0..users {
        let name = format!("u{i:05}");
        if let Err(e) = store.user_add(
            d,
            &name,
            "Given",
            &format!("Sur{i}"),
            Some(&format!("{name}@mail.example.com")),
        ) {
            fail(&mut bed, e.to_string());
        }
    }
    for g in 0..groups {
        if let Err(e) = store.group_add(d, &format!("g{g:03}")) {
            fail(&mut bed, e.to_string());
        }
    }
    for i in 0..users {
        if let Err(e) = store.membership(
            d,
            &format!("g{:03}", i % groups),
            &format!("u{i:05}"),
            None,
            true,
        ) {
            fail(&mut bed, e.to_string());
        }
    }
    let nested = (groups / 10).min(50);
    for g in 0..nested {
        let parent = format!("g{:03}", groups - 1 - g);
        if parent != format!("g{g:03}")
            && let Err(e) = store.membership(d, &parent, &format!("g{g:03}"), None, true)
        {
            fail(&mut bed, e.to_string());
        }
    }
    drop(store);
    println!(
        "cloud: {users} users, {groups} groups, {users} memberships + {nested} nested groups, written in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // ---- the two OUs ------------------------------------------------------------------------
    let agent_ou = format!("OU=Bench Agent,{}", testbed::OU_STAFF);
    let ldif_ou = format!("OU=Bench Ldif,{}", testbed::OU_STAFF);
    let ldif_ou2 = format!("OU=Bench Ldif After,{}", testbed::OU_STAFF);
    let sync_group = format!("CN=Bench Sync,{agent_ou}");
    for ou in [&agent_ou, &ldif_ou, &ldif_ou2] {
        if let Err(e) = ldap_add(
            &bed,
            ou,
            vec![("objectClass", vec!["top", "organizationalUnit"])],
        ) {
            fail(&mut bed, e);
        }
    }
    if let Err(e) = ldap_add(
        &bed,
        &sync_group,
        vec![
            ("objectClass", vec!["top", "group"]),
            ("sAMAccountName", vec!["bench-sync"]),
            ("groupType", vec!["-2147483646"]),
        ],
    ) {
        fail(&mut bed, e);
    }

    // ---- ldapadd of the equivalent LDIF, before the agent and after it --------------------
    // Samba rewrites index records that list every user on each add, so an add costs more the
    // more users the DC already holds: the agent (loading 10,500 entries into a DC that has
    // 10,500) is compared with the mean of an ldapadd before it (into an empty DC) and one
    // after it (into one with 21,000), which bracket its position.
    let pw = root.join("svc.pw");
    let _ = std::fs::write(&pw, testbed::SVC_PASSWORD);
    let bind = format!("{}@example.com", testbed::accounts::GOOD);
    let ldapadd = |bed: &mut testbed::Testbed, ou: &str, p: &str| -> Duration {
        let ldif = root.join(format!("bench-{p}.ldif"));
        let mut text = String::new();
        for i in 0..users {
            let n = format!("{p}{i:05}");
            text.push_str(&format!(
                "dn: CN={n},{ou}\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\nobjectClass: user\n\
                 sAMAccountName: {n}\nuserPrincipalName: {n}@example.com\ngivenName: Given\nsn: Sur{i}\ndisplayName: Given Sur{i}\n\
                 mail: {n}@mail.example.com\nadminDescription: ad-sync:{p}-{i}\nuserAccountControl: 514\n\n"
            ));
        }
        for g in 0..groups {
            text.push_str(&format!(
                "dn: CN={p}g{g:03},{ou}\nobjectClass: group\nsAMAccountName: {p}g{g:03}\ngroupType: -2147483646\nadminDescription: ad-sync:{p}g-{g}\n"
            ));
            for i in (g..users).step_by(groups) {
                text.push_str(&format!("member: CN={p}{i:05},{ou}\n"));
            }
            text.push('\n');
        }
        if let Err(e) = std::fs::write(&ldif, text) {
            fail(bed, e.to_string());
        }
        let (took, _, ok, out) = measured(
            Command::new("ldapadd")
                .args(["-H", "ldaps://dc1.example.com", "-x", "-D", &bind, "-y"])
                .arg(&pw)
                .arg("-f")
                .arg(&ldif)
                .env("LDAPTLS_CACERT", &bed.dc1.ca_file),
        );
        if !ok {
            fail(
                bed,
                format!(
                    "ldapadd failed: {}",
                    out.lines().rev().take(5).collect::<Vec<_>>().join("\n")
                ),
            );
        }
        println!(
            "ldapadd into {ou}: {} entries in {:.1} s",
            users + groups,
            took.as_secs_f64()
        );
        took
    };
    let baseline = std::env::var("BENCH_BASELINE").map_or(true, |v| v != "0");
    let ldif_before = baseline.then(|| ldapadd(&mut bed, &ldif_ou, "l"));

    // ---- the agent ---------------------------------------------------------------------------
    let dir = root.join("agent");
    let _ = std::fs::create_dir_all(&dir);
    let key = server.issue_key(DOMAIN, None);
    let _ = std::fs::write(dir.join("svc.pw"), testbed::SVC_PASSWORD);
    let _ = std::fs::write(dir.join("key.txt"), &key);
    let answers = dir.join("answers.toml");
    let _ = std::fs::write(
        &answers,
        format!(
            "version = 1\n[server]\ntype = \"member\"\ndc_host = \"{}\"\n[ldap]\nca_file = '{}'\ntimeout_seconds = 30\n\
             [directory]\nroot_user_dn = '{agent_ou}'\nsync_group_dn = '{sync_group}'\n\
             [service_account]\nusername = 'EXAMPLE\\{}'\npassword_file = \"svc.pw\"\n\
             [cloud]\nurl = '{}'\nca_file = '{}'\nconnect_key_file = \"key.txt\"\ntimeout_seconds = 60\n",
            testbed::DC1_HOST,
            bed.dc1.ca_file.display(),
            testbed::accounts::GOOD,
            server.url,
            server.ca.display()
        ),
    );
    let prefix = dir.join("root");
    let out = Command::new(setup_bin())
        .args(["install", "--no-start", "--answers"])
        .arg(&answers)
        .arg("--prefix")
        .arg(&prefix)
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => fail(
            &mut bed,
            format!(
                "install failed: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => fail(&mut bed, e.to_string()),
    }
    let config = prefix.join("etc/ad-sync/agent.toml");
    let state = dir.join("state");
    let agent = |extra: &[&str]| {
        let mut c = Command::new(agent_bin());
        c.args(["run", "--config"])
            .arg(&config)
            .arg("--state-dir")
            .arg(&state)
            .args(["--log-dir", "-"])
            .args([
                "--concurrency",
                &std::env::var("BENCH_CONCURRENCY").unwrap_or_else(|_| "8".into()),
            ])
            .args(extra)
            .env("AD_SYNC_LOG", "warn,ad_sync_agent::phase=debug");
        c
    };
    let (sync_time, sync_rss, ok, out) = measured(&mut agent(&["--once"]));
    if !ok {
        fail(
            &mut bed,
            format!(
                "agent sync failed: {}",
                out.lines().rev().take(10).collect::<Vec<_>>().join("\n")
            ),
        );
    }
    let summary = out
        .lines()
        .find(|l| l.starts_with("changes:"))
        .unwrap_or("")
        .to_string();
    println!(
        "agent: first sync in {:.1} s ({summary}); peak RSS {:.1} MB",
        sync_time.as_secs_f64(),
        sync_rss as f64 / 1024.0
    );
    for line in out.lines().filter(|l| l.contains("agent::phase")) {
        println!("  {}", line.split("agent::phase: ").nth(1).unwrap_or(line));
    }
    if let Some(ldif_before) = ldif_before {
        let ldif_after = ldapadd(&mut bed, &ldif_ou2, "m");
        let ldif_mean = (ldif_before + ldif_after).as_secs_f64() / 2.0;
        println!(
            "ratio agent / ldapadd: {:.2} against the mean of before and after ({:.1} s) (target at most 1.0); {:.2} against the one before, {:.2} against the one after",
            sync_time.as_secs_f64() / ldif_mean,
            ldif_mean,
            sync_time.as_secs_f64() / ldif_before.as_secs_f64(),
            sync_time.as_secs_f64() / ldif_after.as_secs_f64()
        );
    } else {
        println!("ldapadd baseline: not run (BENCH_BASELINE=0)");
    }

    let mut noop = Vec::new();
    let mut noop_rss = 0;
    // The state check (open, enrollment binding, held disconnections) and the orphan scan
    // (the marker search over the agent's containers), per run, from the agent's phase lines.
    let mut checks = Vec::new();
    let mut phases_by_run = Vec::new();
    for _ in 0..3 {
        let (t, rss, ok, out) = measured(&mut agent(&["--once", "--resync"]));
        if !ok || !out.contains("operations: 0") {
            fail(&mut bed, format!("no-op resync was not a no-op: {out}"));
        }
        let totals = phase_totals(&out);
        let phase = |name: &str| -> f64 {
            totals
                .iter()
                .filter(|(n, _)| n.contains(name))
                .map(|(_, (secs, _))| secs)
                .sum()
        };
        checks.push((phase("state check"), phase("orphan scan"), t.as_secs_f64()));
        phases_by_run.push((t.as_secs_f64(), totals));
        noop.push(t.as_secs_f64());
        noop_rss = noop_rss.max(rss);
    }
    // The first of the three is the state's first comparison: its orphan scan reads the whole
    // containers (the marker is not indexed); the next two read only what changed since the
    // last scan (uSNChanged, indexed).
    let state_s = checks.iter().map(|c| c.0).sum::<f64>() / 3.0;
    let full_scan = checks[0].1;
    let scan_s = checks[1].1.max(checks[2].1);
    let mut without: Vec<f64> = checks.iter().map(|c| c.2 - c.0 - c.1).collect();
    without.sort_by(f64::total_cmp);
    let rest = without[1];
    println!(
        "state check {:.4} s and orphan scan {:.4} s (changed since the last scan) per no-op resync: together {:.2}% added to the rest of it ({rest:.2} s) (target at most 10%)",
        state_s,
        scan_s,
        100.0 * (state_s + scan_s) / rest.max(f64::EPSILON)
    );
    println!(
        "orphan scan of the whole containers (a state's first comparison, or another DC): {full_scan:.2} s, once"
    );
    noop.sort_by(f64::total_cmp);
    println!(
        "no-op resync of {users} users and {groups} groups (whole process: start, heartbeat, compare): median {:.2} s of 3 ({}) (target under 2 s); peak RSS {:.1} MB",
        noop[1],
        noop.iter()
            .map(|t| format!("{t:.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        noop_rss as f64 / 1024.0
    );

    // Where the median no-op's time went, phase by phase, summed over its passes.
    phases_by_run.sort_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((_, totals)) = phases_by_run.get(1) {
        println!(
            "no-op resync, the median run by phase (summed over its passes): {}",
            totals
                .iter()
                .map(|(name, (secs, n))| format!("{name} {secs:.3} s ({n}x)"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    // Idle: the service loop after its start-up comparison, with nothing to do.
    let mut child = match agent(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => fail(&mut bed, e.to_string()),
    };
    std::thread::sleep(Duration::from_secs(20));
    let field = support::status_mb(child.id());
    println!(
        "agent idle in `run` after its start-up comparison: RSS {:.1} MB, of which {:.1} MB anonymous (the heap, stacks) and {:.1} MB pages of files (the binary and its libraries) (peak so far {:.1} MB) (target under 10 MB idle)",
        field("VmRSS:"),
        field("RssAnon:"),
        field("RssFile:"),
        field("VmHWM:")
    );
    if std::env::var_os("BENCH_MAPS").is_some() {
        for (mapping, rss, anon) in support::resident_by_mapping(child.id()).iter().take(12) {
            println!("  resident idle: {rss:>6} KiB ({anon} KiB anonymous) {mapping}");
        }
    }
    let _ = child.kill();
    let _ = child.wait();

    let size = std::fs::metadata(PathBuf::from(agent_bin()))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "ad-sync-agent binary: {:.1} MB (target under 15 MB)",
        size as f64 / 1_000_000.0
    );
    bed.stop();
}

/// Each phase's time in a run's output (its `agent::phase` lines, "name (detail): 0.12 s"),
/// summed by name over the run's passes, with how many times it came, in order of first coming.
fn phase_totals(out: &str) -> Vec<(String, (f64, usize))> {
    let mut totals: Vec<(String, (f64, usize))> = Vec::new();
    for line in out.lines().filter(|l| l.contains("agent::phase: ")) {
        let Some(text) = line.split("agent::phase: ").nth(1) else {
            continue;
        };
        let Some((name, value)) = text.rsplit_once(": ") else {
            continue;
        };
        let Ok(secs) = value.trim_end_matches(" s").trim().parse::<f64>() else {
            continue;
        };
        let name = name.split(" (").next().unwrap_or(name).to_string();
        match totals.iter_mut().find(|(n, _)| *n == name) {
            Some((_, (t, c))) => {
                *t += secs;
                *c += 1;
            }
            None => totals.push((name, (secs, 1))),
        }
    }
    totals
}
