//! `cargo bench --bench wizard`: the release wizard in a real window under Xvfb (wgpu on Mesa),
//! five runs. Each run opens on the Review page of an installed config whose DC and cloud are
//! a server that accepts connections and never answers, so a check is in flight the whole time.
//! Prints, per run and as medians: the time from process start to the end of the first frame
//! (measured here, from spawn to the line the wizard prints), the frame time (CPU time eframe
//! measures per frame) p50/p99 and the interval between frames p50/p99 over 300 frames drawn
//! while the check waits, and the process's peak RSS.
//! Targets: first frame under 300 ms; p99 frame time under 16 ms.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 5;
const FRAMES: u32 = 300;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-wizard");
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::create_dir_all(root.join("secrets"));

    // A server that accepts and never says a word, for the DC and the cloud.
    let listener = match TcpListener::bind("127.0.0.1:0") {
        Ok(l) => l,
        Err(e) => fail(&format!("cannot listen on loopback: {e}")),
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let config = root.join("agent.toml");
    let text = format!(
        "version = 1\n[server]\ntype = \"member\"\ndc_host = \"127.0.0.1\"\n[ldap]\nport = {port}\ntimeout_seconds = 120\n\
         [directory]\nroot_user_dn = 'OU=Staff;DC=example;DC=com'\nsync_group_dn = 'CN=Cloud Groups;OU=Staff;DC=example;DC=com'\n\
         [service_account]\nusername = 'EXAMPLE\\svc-sync'\n[cloud]\nurl = 'https://127.0.0.1:{port}'\ntimeout_seconds = 120\n"
    );
    let pw = root.join("secrets").join("service-account-password");
    if std::fs::write(&config, text)
        .and_then(|_| std::fs::write(&pw, "bench-password"))
        .is_err()
    {
        fail("cannot write the bench config");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600));
    }

    let display = ":97";
    let mut xvfb = match Command::new("Xvfb")
        .args([display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => fail(&format!(
            "cannot start Xvfb ({e}); install it: apt-get install -y xvfb"
        )),
    };
    let socket = Path::new("/tmp/.X11-unix/X97");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut rows = Vec::new();
    for run in 1..=RUNS {
        let started = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_ad-sync-setup"))
            .arg("--config")
            .arg(&config)
            .env("DISPLAY", display)
            .env_remove("WAYLAND_DISPLAY")
            .env("AD_SYNC_WIZARD_BENCH", FRAMES.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => fail(&format!("cannot start ad-sync-setup: {e}")),
        };
        let mut first = None;
        let mut stats = String::new();
        if let Some(out) = child.stdout.take() {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.starts_with("first-frame") && first.is_none() {
                    first = Some(started.elapsed().as_secs_f64() * 1000.0);
                } else if line.starts_with("peak-rss-kib") {
                    stats = line;
                }
            }
        }
        let _ = child.wait();
        let field = |name: &str| -> f64 {
            let mut it = stats.split_whitespace();
            while let Some(k) = it.next() {
                if k == name {
                    return it.next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
                }
            }
            f64::NAN
        };
        let row = [
            first.unwrap_or(f64::NAN),
            field("cpu-p50-ms"),
            field("cpu-p99-ms"),
            field("interval-p50-ms"),
            field("interval-p99-ms"),
            field("peak-rss-kib") / 1024.0,
        ];
        println!(
            "run {run}: first frame {:.0} ms; frame time p50 {:.2} ms, p99 {:.2} ms; interval p50 {:.2} ms, p99 {:.2} ms; peak RSS {:.1} MiB",
            row[0], row[1], row[2], row[3], row[4], row[5]
        );
        rows.push(row);
    }
    let _ = xvfb.kill();
    let _ = xvfb.wait();
    let median = |i: usize| {
        let mut v: Vec<f64> = rows.iter().map(|r| r[i]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "median of {RUNS}: first frame {:.0} ms (target < 300); frame time p50 {:.2} ms, p99 {:.2} ms (target p99 < 16); \
         interval p50 {:.2} ms, p99 {:.2} ms; peak RSS {:.1} MiB",
        median(0),
        median(1),
        median(2),
        median(3),
        median(4),
        median(5)
    );
}

fn fail(why: &str) -> ! {
    eprintln!("bench wizard: {why}");
    std::process::exit(2);
}
