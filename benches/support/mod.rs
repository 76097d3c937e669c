//! What the benches that run the test domain share: stopping what they started when they fail,
//! sizes from the environment, a command's wall time and peak RSS, seeding AD.

use std::process::{Command, Stdio};
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

/// Runs a command to its end; wall time, peak RSS (KiB, from wait4) and success.
pub fn measured(cmd: &mut Command) -> (Duration, i64, bool, String) {
    let started = Instant::now();
    let child = match cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(e) => return (started.elapsed(), 0, false, e.to_string()),
    };
    let pid = child.id() as i32;
    // Drain the pipes on threads so a chatty child cannot block.
    let mut child = child;
    let out = child.stdout.take();
    let err = child.stderr.take();
    let t1 = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut o) = out {
            let _ = std::io::Read::read_to_string(&mut o, &mut s);
        }
        s
    });
    let t2 = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut o) = err {
            let _ = std::io::Read::read_to_string(&mut o, &mut s);
        }
        s
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child's pid.
    unsafe {
        libc::wait4(pid, &mut status, 0, &mut usage);
    }
    let took = started.elapsed();
    let text = format!(
        "{}{}",
        t1.join().unwrap_or_default(),
        t2.join().unwrap_or_default()
    );
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (took, usage.ru_maxrss, ok, text)
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
