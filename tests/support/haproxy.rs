//! HAProxy from Debian's package in front of several `ad-sync-cloud serve` nodes, as a load
//! balancer would stand in front of a cloud of several machines. TCP mode: TLS passes through
//! to the nodes, which share one certificate, so the agent verifies the cloud as it does
//! without a balancer. `balance first`: every new connection goes to the first node that is up,
//! so a test knows which node it kills. Started by the test on a free loopback port, stopped by
//! its PID.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Haproxy {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Haproxy {
    /// Starts HAProxy on a free loopback port in front of the nodes on `ports` (in order).
    pub fn start(tag: &str, ports: &[u16]) -> Haproxy {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("haproxy-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("{e}"));
        // A node that refuses a connection is marked down within 200 ms; a connection it
        // refused meanwhile is tried again on the next node (`retries`, `option redispatch`).
        let servers: String = ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                format!("    server n{i} 127.0.0.1:{p} check inter 200ms fall 1 rise 2\n")
            })
            .collect();
        let config = format!(
            "global\n    maxconn 512\n\
             defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 120s\n    timeout server 120s\n    retries 3\n    option redispatch\n\
             frontend cloud\n    bind 127.0.0.1:{port}\n    default_backend nodes\n\
             backend nodes\n    balance first\n{servers}"
        );
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(&cfg, config).unwrap_or_else(|e| panic!("{e}"));
        let log = std::fs::File::create(dir.join("haproxy.log")).unwrap_or_else(|e| panic!("{e}"));
        let err = log.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new("haproxy")
            .arg("-f")
            .arg(&cfg)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start haproxy (Debian's package haproxy; dev/setup-machine installs it): {e}"
                )
            });
        super::stop_at_exit([child.id()]);
        let mut h = Haproxy {
            port,
            dir,
            child: Some(child),
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(Ok(Some(status))) = h.child.as_mut().map(|c| c.try_wait()) {
                panic!("haproxy exited with {status}: {}", h.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "haproxy did not listen: {}",
                h.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        h
    }

    /// The cloud's URL through the balancer.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
