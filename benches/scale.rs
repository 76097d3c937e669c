//! `cargo bench --bench scale`: #29's figures in one output.
//!
//! 1. The cloud's heartbeat load (`ad-sync-cloud load`, release) against one node on SQLite,
//!    one node on PostgreSQL, and three nodes on one PostgreSQL database behind HAProxy, in
//!    the same run on the same machine, for 1,000 and for 10,000 agents: heartbeats per second,
//!    p99, and the nodes' peak RSS. Goals: three nodes at least 2x one node on PostgreSQL, p99
//!    under 50 ms.
//! 2. The agent's memory at two directory sizes (`cargo bench --bench agent` run for each of
//!    `SCALE_AGENT_USERS`, default "10000,50000"; "0" leaves it out): first sync's peak RSS, the
//!    no-op comparison, idle RSS and where it is. Goals: peaks within 10 MB of each other and
//!    at most 50 MB, idle at most 10 MB.
//!
//! PostgreSQL is a throwaway cluster from Debian's package (tests/support/postgres.rs), with
//! `fsync=off` as in the tests; SQLite runs as the cloud runs it (WAL, synchronous=NORMAL, so
//! neither flushes to disk at each commit). `SCALE_SECONDS` sets the heartbeat time of each
//! load run (default 10). Figures only: nothing here passes or fails on them.

#[allow(dead_code)]
#[path = "../tests/support/bins.rs"]
mod bins;
#[path = "../tests/support/postgres.rs"]
mod postgres;

use std::path::Path;
use std::process::Command;

struct Load {
    rate: f64,
    p99: f64,
    failed: u64,
    peak_mib: f64,
    enroll: String,
}

fn field<'a>(text: &'a str, after: &str) -> Option<&'a str> {
    let at = text.find(after)? + after.len();
    text[at..].split_whitespace().next()
}

fn run_load(cloud: &str, agents: u32, seconds: &str, extra: &[&str]) -> Result<Load, String> {
    let out = Command::new(cloud)
        .args([
            "load",
            "--agents",
            &agents.to_string(),
            "--seconds",
            seconds,
        ])
        .args(["--concurrency", "32", "--idle", "0"])
        .args(extra)
        .output()
        .map_err(|e| format!("{cloud} load: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "load failed ({}): {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let rate = field(&text, "s = ")
        .and_then(|r| r.trim_end_matches("/s,").parse().ok())
        .ok_or_else(|| format!("no rate in: {text}"))?;
    let p99 = field(&text, "p99 ")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("no p99 in: {text}"))?;
    let failed = text
        .lines()
        .find(|l| l.starts_with("heartbeats:"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|f| f.split_whitespace().next())
        .and_then(|f| f.parse().ok())
        .unwrap_or(0);
    let peak_mib = field(&text, "peak ")
        .and_then(|p| p.trim_end_matches(';').parse().ok())
        .unwrap_or(0.0);
    let enroll = text
        .lines()
        .find(|l| l.starts_with("enrolled"))
        .unwrap_or("")
        .to_string();
    Ok(Load {
        rate,
        p99,
        failed,
        peak_mib,
        enroll,
    })
}

fn main() {
    let cloud = bins::cloud();
    bins::built("ad-sync-cloud-load");
    let seconds = std::env::var("SCALE_SECONDS").unwrap_or_else(|_| "10".into());
    let cluster = postgres::cluster(Path::new(env!("CARGO_TARGET_TMPDIR")));
    let machine = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "scale: the cloud's heartbeat load, {seconds} s each, 32 requests in flight, on {machine} cores (client, nodes, PostgreSQL and HAProxy share them)"
    );
    println!(
        "{:>7}  {:<34} {:>12} {:>9} {:>8} {:>10}",
        "agents", "cloud", "heartbeats/s", "p99 ms", "failed", "RSS MiB"
    );
    let mut ratios = Vec::new();
    for agents in [1_000u32, 10_000] {
        let mut pg_one = None;
        for (name, how) in [
            ("1 node, SQLite", 0),
            ("1 node, PostgreSQL", 1),
            ("3 nodes, PostgreSQL, HAProxy", 3),
        ] {
            let url;
            let mut extra: Vec<&str> = Vec::new();
            if how > 0 {
                url = cluster.new_database(&format!("load_{agents}_{how}"));
                extra.extend(["--db", url.as_str()]);
            }
            if how == 3 {
                extra.extend(["--nodes", "3", "--haproxy"]);
            }
            match run_load(cloud, agents, &seconds, &extra) {
                Ok(l) => {
                    println!(
                        "{agents:>7}  {name:<34} {:>12.0} {:>9.2} {:>8} {:>10.1}   ({})",
                        l.rate, l.p99, l.failed, l.peak_mib, l.enroll
                    );
                    match how {
                        1 => pg_one = Some(l.rate),
                        3 => {
                            if let Some(one) = pg_one {
                                ratios.push((agents, l.rate / one, l.p99));
                            }
                        }
                        _ => {}
                    }
                }
                Err(e) => println!("{agents:>7}  {name:<34} failed: {e}"),
            }
        }
    }
    for (agents, ratio, p99) in &ratios {
        println!(
            "{agents} agents: three nodes on PostgreSQL {ratio:.2}x one (goal at least 2x: {}); p99 {p99:.2} ms (goal under 50 ms: {})",
            if *ratio >= 2.0 { "met" } else { "NOT met" },
            if *p99 < 50.0 { "met" } else { "NOT met" }
        );
    }

    let sizes = std::env::var("SCALE_AGENT_USERS").unwrap_or_else(|_| "10000,50000".into());
    let sizes: Vec<&str> = sizes
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "0")
        .collect();
    if sizes.is_empty() {
        println!("agent memory: not run (SCALE_AGENT_USERS=0)");
        return;
    }
    let mut peaks = Vec::new();
    let mut idle = Vec::new();
    for users in sizes {
        println!("agent memory at {users} cloud users (cargo bench --bench agent):");
        let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["bench", "--quiet", "--bench", "agent", "--manifest-path"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .env("BENCH_USERS", users)
            .env("BENCH_BASELINE", "0")
            .env("BENCH_MAPS", "1")
            .output()
            .unwrap_or_else(|e| panic!("cargo bench --bench agent: {e}"));
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines().filter(|l| {
            l.starts_with("agent: first sync")
                || l.starts_with("no-op resync")
                || l.starts_with("agent idle")
                || l.starts_with("  resident idle")
                || l.starts_with("ad-sync-agent binary")
        }) {
            println!("  {line}");
        }
        if !out.status.success() {
            println!(
                "  failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .join(" / ")
            );
        }
        // The figure after `after` on the line that starts with `line`.
        let figure = |line: &str, after: &str| {
            text.lines()
                .find(|l| l.starts_with(line))
                .and_then(|l| field(l, after))
                .and_then(|p| p.parse::<f64>().ok())
        };
        if let Some(peak) = figure("agent: first sync", "peak RSS ") {
            peaks.push((users.to_string(), peak));
        }
        if let Some(rss) = figure("agent idle", "RSS ") {
            idle.push((users.to_string(), rss));
        }
    }
    if !idle.is_empty() {
        println!(
            "agent idle RSS {} (goal at most 10 MB: {})",
            idle.iter()
                .map(|(u, r)| format!("{r:.1} MB at {u} users"))
                .collect::<Vec<_>>()
                .join(", "),
            if idle.iter().all(|(_, r)| *r <= 10.0) {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    if let [(a, pa), .., (b, pb)] = peaks.as_slice() {
        println!(
            "agent first sync peak RSS {pa:.1} MB at {a} users, {pb:.1} MB at {b}: {:.1} MB apart (goal within 10 MB, both at most 50 MB: {})",
            (pb - pa).abs(),
            if (pb - pa).abs() <= 10.0 && *pa <= 50.0 && *pb <= 50.0 {
                "met"
            } else {
                "NOT met"
            }
        );
    }
}
