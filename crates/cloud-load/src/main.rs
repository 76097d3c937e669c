//! `ad-sync-cloud-load` (run by `ad-sync-cloud load`): the heartbeat load test. It starts its own `ad-sync-cloud serve` on
//! loopback with a throwaway database (so nothing real is touched and the server's memory can be
//! read apart from the client's), enrolls the simulated agents over HTTPS with real connect keys,
//! then drives heartbeats for a bounded time and prints throughput, latency percentiles and the
//! server's resident memory once a second.
//!
//! Figures only: it does not pass or fail on them (it exits 1 only when requests fail).

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ad_sync_cloud::cli::{LoadArgs, exit};
use ad_sync_cloud::server::store::Store;
use ad_sync_core::cloud::api::HeartbeatRequest;
use ad_sync_core::cloud::client::{CloudClient, CloudOptions};
use ad_sync_core::cloud::sealed;
use ad_sync_core::secret::Secret;
use clap::Parser;

/// The heartbeat load test of the reference cloud: starts its own `ad-sync-cloud serve` (the
/// program beside this one) on loopback with a throwaway database, enrolls simulated agents
/// with the agents' own client, drives heartbeats and prints the figures.
#[derive(Debug, Parser)]
#[command(name = "ad-sync-cloud-load", version)]
struct Cli {
    #[command(flatten)]
    args: LoadArgs,
}

fn main() {
    let cli = Cli::parse();
    std::process::exit(run(&cli.args));
}

/// At most this many heartbeats are timed, however fast the machine (bounds the run's memory).
const MAX_HEARTBEATS: u64 = 2_000_000;
const DOMAIN: &str = "DC=load,DC=test";

fn run(args: &LoadArgs) -> i32 {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::CANNOT_RUN;
        }
    };
    match rt.block_on(load(args)) {
        Ok(0) => exit::OK,
        Ok(_) => exit::REFUSED,
        Err(e) => {
            eprintln!("error: {e}");
            exit::CANNOT_RUN
        }
    }
}

/// Kills the servers (and the balancer) and removes the scratch folder however the run ends.
struct Scratch {
    dir: PathBuf,
    children: Vec<Child>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for mut c in self.children.drain(..) {
            // Cleaning up after the load run: a child may have exited already.
            let _ = c.kill();
            let _ = c.wait();
        }
        // Best effort: a scratch folder left behind is only clutter.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn load(args: &LoadArgs) -> Result<u64, String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("ad-sync-load-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut scratch = Scratch {
        dir: dir.clone(),
        children: Vec::new(),
    };
    let db = match &args.db {
        Some(url) => PathBuf::from(url),
        None => dir.join("cloud.db"),
    };
    let tls = dir.join("tls");
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find this program: {e}"))?
        .with_file_name(format!("ad-sync-cloud{}", std::env::consts::EXE_SUFFIX));
    // One after the other: the first makes the self-signed certificate the others serve too.
    let mut nodes = Vec::new();
    for _ in 0..args.nodes {
        let (child, url) = start_node(&exe, &db, &tls).await?;
        nodes.push((child.id(), url));
        scratch.children.push(child);
    }
    let pids: Vec<u32> = nodes.iter().map(|(pid, _)| *pid).collect();
    let url = if args.haproxy {
        let ports: Vec<u16> = nodes
            .iter()
            .filter_map(|(_, u)| u.rsplit(':').next()?.parse().ok())
            .collect();
        let (child, url) = start_haproxy(&dir, &ports).await?;
        scratch.children.push(child);
        url
    } else {
        nodes[0].1.clone()
    };

    // The store off the runtime's threads: its PostgreSQL client blocks on a runtime of its own.
    let n = args.agents as usize;
    let keys = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || -> Result<Vec<_>, String> {
            let store = Store::open(&db).map_err(|e| e.to_string())?;
            store.add_domain(DOMAIN).map_err(|e| e.to_string())?;
            if !store.agents().map_err(|e| e.to_string())?.is_empty() {
                return Err(format!(
                    "--db {}: it holds agents already; give the load test an empty database",
                    db.display()
                ));
            }
            let mut keys = Vec::with_capacity(n);
            for _ in 0..n {
                let (key, _) = store
                    .issue_key(DOMAIN, Duration::from_secs(3600))
                    .map_err(|e| e.to_string())?;
                keys.push(key);
            }
            Ok(keys)
        })
        .await
        .map_err(|e| e.to_string())??
    };

    let mut opts = CloudOptions::new(url.clone());
    opts.ca_file = Some(tls.join("ca.pem"));
    let client = Arc::new(CloudClient::new(&opts).map_err(|e| e.to_string())?);
    println!(
        "ad-sync-cloud load: {n} agents, {} s of heartbeats, {} in flight, {} on {}, {url}{} (pids {pids:?})",
        args.seconds,
        args.concurrency,
        match args.nodes {
            1 => "one node".to_string(),
            n => format!("{n} nodes"),
        },
        if args.db.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        if args.haproxy { " through HAProxy" } else { "" },
    );

    // Enroll every agent, `concurrency` at a time.
    let started = Instant::now();
    let keys = Arc::new(keys);
    let workers = args.concurrency as usize;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let client = client.clone();
        let keys = keys.clone();
        tasks.push(tokio::spawn(async move {
            let mut creds = Vec::new();
            for i in (w..keys.len()).step_by(workers) {
                let pair = sealed::generate_key_pair();
                let resp = client
                    .enroll(
                        &keys[i],
                        DOMAIN,
                        &format!("load-{i}"),
                        "load",
                        "load",
                        &pair.public_key,
                    )
                    .await
                    .map_err(|e| format!("enrolling agent {i}: {e}"))?;
                creds.push(Secret::new(resp.credential));
            }
            Ok::<_, String>(creds)
        }));
    }
    let mut credentials = Vec::with_capacity(n);
    for t in tasks {
        credentials.extend(t.await.map_err(|e| e.to_string())??);
    }
    let enroll_secs = started.elapsed().as_secs_f64();
    println!(
        "enrolled {n} agents in {enroll_secs:.2} s ({:.0}/s)",
        n as f64 / enroll_secs
    );

    if args.idle > 0 {
        idle_phase(&client, &tls.join("ca.pem"), &url, args).await?;
    }

    // Heartbeats until the deadline, with the server's memory sampled once a second.
    let credentials = Arc::new(credentials);
    let count = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let run_for = Duration::from_secs(args.seconds);
    // The nodes' resident memory, summed.
    let sampled = pids.clone();
    let rss = move || -> Option<u64> { sampled.iter().map(|p| rss_kib(*p)).sum() };
    let sampler = tokio::spawn(async move {
        let mut samples = vec![rss()];
        let begin = Instant::now();
        while begin.elapsed() < run_for {
            tokio::time::sleep(Duration::from_secs(1)).await;
            samples.push(rss());
        }
        samples
    });
    let started = Instant::now();
    let deadline = started + run_for;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let client = client.clone();
        let credentials = credentials.clone();
        let count = count.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies_us: Vec<u32> = Vec::new();
            let mine: Vec<usize> = (w..credentials.len()).step_by(workers).collect();
            if mine.is_empty() {
                return latencies_us;
            }
            let req = HeartbeatRequest {
                version: "load".into(),
                host: format!("load-worker-{w}"),
                status: "ok".into(),
                message: None,
                run: None,
            };
            let mut i = 0;
            while Instant::now() < deadline
                && count.fetch_add(1, Ordering::Relaxed) < MAX_HEARTBEATS
            {
                let t = Instant::now();
                match client
                    .heartbeat(&credentials[mine[i % mine.len()]], &req)
                    .await
                {
                    Ok(_) => {
                        latencies_us.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32)
                    }
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("heartbeat failed: {e}");
                        }
                    }
                }
                i += 1;
            }
            latencies_us
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.map_err(|e| e.to_string())?);
    }
    let secs = started.elapsed().as_secs_f64();
    let samples = sampler.await.map_err(|e| e.to_string())?;
    let errors = errors.load(Ordering::Relaxed);
    latencies.sort_unstable();
    let pct = |p: f64| percentile_ms(&latencies, p);
    let rate = latencies.len() as f64 / secs;
    println!(
        "heartbeats: {} in {secs:.2} s = {rate:.0}/s, {errors} failed",
        latencies.len()
    );
    println!(
        "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );
    let mib = |k: u64| k as f64 / 1024.0;
    let measured: Vec<u64> = samples.iter().flatten().copied().collect();
    match (measured.first(), measured.last()) {
        (Some(first), Some(last)) => {
            let peak = measured.iter().max().copied().unwrap_or(0);
            println!(
                "server RSS MiB (all nodes): start {:.1}, end {:.1} ({:+.1}), peak {:.1}; per second: {}",
                mib(*first),
                mib(*last),
                mib(*last) - mib(*first),
                mib(peak),
                measured
                    .iter()
                    .map(|k| format!("{:.1}", mib(*k)))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        _ => println!("server RSS: not measured on this OS"),
    }
    println!(
        "targets: >= 2000 heartbeats/s: {}; p99 < 50 ms: {}",
        if rate >= 2000.0 { "met" } else { "NOT met" },
        if pct(0.99) < 50.0 { "met" } else { "NOT met" }
    );
    drop(scratch);
    Ok(errors)
}

/// Starts one `serve` node on `db`; the child and the address it prints.
async fn start_node(
    exe: &std::path::Path,
    db: &std::path::Path,
    tls: &std::path::Path,
) -> Result<(Child, String), String> {
    let mut child = Command::new(exe)
        .arg("serve")
        .arg("--db")
        .arg(db)
        .args(["--listen", "127.0.0.1:0", "--self-signed"])
        .arg(tls)
        .env("AD_SYNC_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the server: {e}"))?;
    let stdout = child.stdout.take();
    let first_line = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            if let Some(out) = stdout {
                let mut reader = std::io::BufReader::new(out);
                // An unreadable first line is an empty one: the caller reports "no address".
                let _ = reader.read_line(&mut line);
                // Keep reading (and dropping) what else the server prints, so it never writes
                // into a closed pipe.
                std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
            }
            line
        }),
    )
    .await;
    let first_line = match first_line {
        Ok(Ok(line)) => line,
        other => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(match other {
                Err(_) => "the server did not start within 30 s".to_string(),
                Ok(Err(e)) => e.to_string(),
                Ok(Ok(_)) => unreachable!("matched above"),
            });
        }
    };
    match first_line
        .trim()
        .strip_prefix("ad-sync-cloud listening on ")
    {
        Some(url) => Ok((child, url.to_string())),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("the server did not start: {first_line}"))
        }
    }
}

/// Starts Debian's HAProxy in TCP mode (TLS passes through to the nodes), round robin over
/// `ports`, on a free loopback port; the child and the address to use.
async fn start_haproxy(dir: &std::path::Path, ports: &[u16]) -> Result<(Child, String), String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())?;
    let servers: String = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("    server n{i} 127.0.0.1:{p}\n"))
        .collect();
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n    maxconn 4096\n\
             defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 60s\n    timeout server 60s\n\
             frontend cloud\n    bind 127.0.0.1:{port}\n    default_backend nodes\n\
             backend nodes\n    balance roundrobin\n{servers}"
        ),
    )
    .map_err(|e| format!("{}: {e}", cfg.display()))?;
    let mut child = Command::new("haproxy")
        .arg("-f")
        .arg(&cfg)
        .arg("-db")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start haproxy (Debian's package haproxy): {e}"))?;
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if started.elapsed() > Duration::from_secs(20) || matches!(child.try_wait(), Ok(Some(_))) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("haproxy did not listen on 127.0.0.1:{port}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((child, format!("https://127.0.0.1:{port}")))
}

/// The process's resident set in KiB (Linux); `None` elsewhere.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Holds `args.idle` idle TLS connections (each has sent half a request line, as a slow or
/// hostile client does) and times `/v1/health` meanwhile; then lets them go.
async fn idle_phase(
    client: &Arc<CloudClient>,
    ca: &std::path::Path,
    url: &str,
    args: &LoadArgs,
) -> Result<(), String> {
    use rustls_pki_types::pem::PemObject;
    use tokio::io::AsyncWriteExt as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca)
        .map_err(|e| format!("{}: {e}", ca.display()))?
    {
        roots
            .add(cert.map_err(|e| format!("{}: {e}", ca.display()))?)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let server: std::net::SocketAddr = url
        .trim_start_matches("https://")
        .parse()
        .map_err(|e| format!("{url}: {e}"))?;
    let started = Instant::now();
    let mut opening = tokio::task::JoinSet::new();
    for i in 0..args.idle {
        let connector = connector.clone();
        // 100 per address: under the server's per-address cap, as many clients would be.
        let from = std::net::Ipv4Addr::new(127, 0, 1, (i / 100 + 1) as u8);
        opening.spawn(async move {
            let sock = tokio::net::TcpSocket::new_v4().ok()?;
            sock.bind((from, 0).into()).ok()?;
            let tcp = sock.connect(server).await.ok()?;
            let name = rustls_pki_types::ServerName::try_from("127.0.0.1").ok()?;
            let mut tls = connector.connect(name, tcp).await.ok()?;
            tls.write_all(b"GET /v1/hea").await.ok()?;
            Some(tls)
        });
    }
    let mut held = Vec::new();
    while let Some(r) = opening.join_next().await {
        if let Ok(Some(c)) = r {
            held.push(c);
        }
    }
    println!(
        "idle: {} of {} connections open and idle after {:.2} s",
        held.len(),
        args.idle,
        started.elapsed().as_secs_f64()
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.min(8) {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut failed = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                match client.health().await {
                    Ok(_) => lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32),
                    Err(_) => failed += 1,
                }
            }
            (lat, failed)
        }));
    }
    let mut lat = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (l, f) = t.await.map_err(|e| e.to_string())?;
        lat.extend(l);
        failed += f;
    }
    lat.sort_unstable();
    let pct = |p: f64| percentile_ms(&lat, p);
    println!(
        "health while {} idle connections are held: {} answered, {failed} failed; latency ms p50 {:.2}  p99 {:.2}  max {:.2}",
        held.len(),
        lat.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    drop(held);
    Ok(())
}

/// The `p` percentile (0..=1) of sorted latencies in microseconds, in milliseconds (0 when
/// there are none).
fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let idx = ((sorted_us.len() as f64 * p).ceil() as usize).clamp(1, sorted_us.len()) - 1;
    sorted_us[idx] as f64 / 1000.0
}
