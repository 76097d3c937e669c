//! What the benches that run the test domain share: stopping what they started when they fail,
//! sizes from the environment, a command's wall time and peak RSS, seeding AD.

use std::process::Command;
use std::time::{Duration, Instant};

/// The reference cloud's process, so a failing run can stop it before it exits.
static CHILDREN: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// A fresh test domain (lmdb: with tdb each add gets dearer as the database grows) and a
/// reference cloud with `domain` added, under `target/<name>`. Exits when the domain cannot
/// start. Call before starting any thread (it sets an environment variable).
pub fn start(
    name: &str,
    domain: &str,
) -> (
    std::path::PathBuf,
    crate::testbed::Testbed,
    crate::cloud::CloudServer,
) {
    start_with(name, domain, &[])
}

/// The same, with the reference cloud started with `cloud_args` too.
pub fn start_with(
    name: &str,
    domain: &str,
    cloud_args: &[&str],
) -> (
    std::path::PathBuf,
    crate::testbed::Testbed,
    crate::cloud::CloudServer,
) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/{name}"));
    // A leftover from an earlier run, or nothing.
    let _ = std::fs::remove_dir_all(&root);
    if let Err(e) = std::fs::create_dir_all(&root) {
        eprintln!("cannot create {}: {e}", root.display());
        std::process::exit(2);
    }
    // SAFETY: set before any thread is started (the caller's promise).
    unsafe {
        std::env::set_var("TESTBED_BACKEND_STORE", "mdb");
    }
    let bed = match crate::testbed::Testbed::start(&root) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot start the test domain: {e}");
            std::process::exit(2);
        }
    };
    let server = crate::cloud::CloudServer::start(name, cloud_args);
    server.admin_ok(&["domain", "add", domain]);
    (root, bed, server)
}

pub fn stop_at_exit(pids: impl IntoIterator<Item = u32>) {
    if let Ok(mut c) = CHILDREN.lock() {
        c.extend(pids);
    }
}

pub fn fail(bed: &mut crate::testbed::Testbed, what: String) -> ! {
    eprintln!("bench: {what}");
    bed.stop();
    // `exit` runs no destructors: stop the cloud server by hand.
    for pid in CHILDREN.lock().map(|c| c.clone()).unwrap_or_default() {
        // SAFETY: kill(2) on a process this bench started.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
    }
    std::process::exit(1);
}

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs a command to its end; wall time, peak RSS (KiB) and success.
///
/// The peak is the command's own, as GNU `time` reports it (`%M`, from wait4 in `time`, a
/// small process): a wait4 in this bench would report at least the bench's own size, because
/// the kernel keeps the largest resident size of the child's memory before its exec, which is
/// this process's (measured: a first export at 30.7 MB was reported as 51.7 MB, this bench's
/// size after seeding 10,000 users).
pub fn measured(cmd: &mut Command) -> (Duration, i64, bool, String) {
    let m = measured_cpu(cmd);
    (m.took, m.rss, m.ok, m.out)
}

/// What `measured_cpu` measured of one command.
pub struct Measured {
    pub took: Duration,
    /// Peak RSS, KiB.
    pub rss: i64,
    /// User and system CPU seconds of the command, as `time` reports them.
    pub cpu: f64,
    pub ok: bool,
    pub out: String,
}

/// `measured`, with the command's CPU time as well.
pub fn measured_cpu(cmd: &mut Command) -> Measured {
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let report = std::env::temp_dir().join(format!(
        "bench-rss-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-o")
        .arg(&report)
        .args(["-f", "%M %U %S"])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        timed.current_dir(d);
    }
    let started = Instant::now();
    let out = timed.output();
    let took = started.elapsed();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            return Measured {
                took,
                rss: 0,
                cpu: 0.0,
                ok: false,
                out: format!(
                    "/usr/bin/time (Debian's `time`, which dev/setup-machine installs): {e}"
                ),
            };
        }
    };
    // `time` writes "Command exited with non-zero status N" first when it does.
    let last = std::fs::read_to_string(&report)
        .ok()
        .and_then(|t| t.lines().last().map(str::to_string))
        .unwrap_or_default();
    let mut fields = last.split_whitespace();
    let rss = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
    let cpu = fields.filter_map(|f| f.parse::<f64>().ok()).sum();
    let _ = std::fs::remove_file(&report);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Measured {
        took,
        rss,
        cpu,
        ok: out.status.success(),
        out: text,
    }
}

/// Process `pid`'s /proc/PID/status as read now: a field's value in MB by its name with the
/// colon (`"VmRSS:"`, `"RssAnon:"`, `"VmHWM:"`), 0 when absent.
pub fn status_mb(pid: u32) -> impl Fn(&str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    move |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

/// CPU seconds (user and system) process `pid` has used so far, from /proc/PID/stat.
pub fn process_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are the 14th and 15th fields of the line, the 12th and 13th after it.
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| f.get(i).and_then(|t| t.parse::<f64>().ok()))
        .sum();
    ticks / clock_ticks()
}

/// CPU seconds the whole machine has been busy (every state but idle and iowait), from
/// /proc/stat.
pub fn machine_busy() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().next() else {
        return 0.0;
    };
    let v: Vec<f64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let busy: f64 = v
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    busy / clock_ticks()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

pub fn ldap_add(
    bed: &crate::testbed::Testbed,
    dn: &str,
    attrs: Vec<(&str, Vec<&str>)>,
) -> Result<(), String> {
    let attrs: Vec<(&str, std::collections::HashSet<&str>)> = attrs
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().collect()))
        .collect();
    crate::cloud::block_on(async {
        let mut l = bed.dc1.admin().await?;
        l.add(dn, attrs)
            .await
            .and_then(|r| r.success())
            .map(|_| ())
            .map_err(|e| format!("add {dn}: {e}"))
    })
}

/// `ad-sync-setup install --no-start --answers ANSWERS --prefix PREFIX`, as a bench installs an
/// agent; the installed config's path. Stops the bench with the install's output when it fails.
pub fn install_under(
    bed: &mut crate::testbed::Testbed,
    setup: &str,
    answers: &std::path::Path,
    prefix: &std::path::Path,
) -> std::path::PathBuf {
    match Command::new(setup)
        .args(["install", "--no-start", "--answers"])
        .arg(answers)
        .arg("--prefix")
        .arg(prefix)
        .output()
    {
        Ok(o) if o.status.success() => {}
        Ok(o) => fail(
            bed,
            format!(
                "install failed: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => fail(bed, e.to_string()),
    }
    prefix.join("etc/ad-sync/agent.toml")
}

/// Where process `pid`'s resident memory is, from /proc/PID/smaps: (mapping, RSS KiB, anonymous
/// KiB) by file (or `[heap]`, `[stack]`, `anonymous`), largest first.
pub fn resident_by_mapping(pid: u32) -> Vec<(String, u64, u64)> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut by: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for m in ad_sync_agent::idle::parse_smaps(&smaps) {
        let name = if m.path.is_empty() {
            "anonymous".to_string()
        } else {
            m.path
        };
        let e = by.entry(name).or_default();
        e.0 += m.rss_kib;
        e.1 += m.anonymous_kib;
    }
    let mut v: Vec<_> = by.into_iter().map(|(k, (r, a))| (k, r, a)).collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.1));
    v
}
