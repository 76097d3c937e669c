//! A throwaway PostgreSQL cluster from Debian's package (`postgresql`, which `dev/setup-machine`
//! installs), as the Samba DCs are: its own data folder, on a free loopback port, started on
//! first use by a test binary and stopped by its PID when the binary exits. Each cloud a test
//! starts gets a database of its own in it.
//!
//! Written on std and libc only, so that the cloud crate's unit tests include it too.
//!
//! PostgreSQL refuses to run as root, so as root the cluster runs as the package's `postgres`
//! user. It runs with `fsync=off`: a test's database does not outlive the machine.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
    pub bin: PathBuf,
    /// The CA that signed the server's certificate (for 127.0.0.1): PGSSLROOTCERT.
    pub ca: PathBuf,
    pid: u32,
    next: AtomicU32,
}

/// Debian's PostgreSQL programs (`/usr/lib/postgresql/<version>/bin`), the newest there.
fn bin_dir() -> Result<PathBuf, String> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| {
            format!("/usr/lib/postgresql: {e}; install Debian's postgresql (dev/setup-machine)")
        })?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((v, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, b)| b)
        .ok_or_else(|| "no PostgreSQL server under /usr/lib/postgresql; install Debian's postgresql (dev/setup-machine)".into())
}

/// The `postgres` user's uid and gid, when this process is root.
fn run_as() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&"postgres"))
            .then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))?
    })
}

fn as_owner(cmd: &mut Command, owner: Option<(u32, u32)>) -> &mut Command {
    use std::os::unix::process::CommandExt as _;
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

static PID: AtomicU32 = AtomicU32::new(0);
static DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn stop_at_exit() {
    let pid = PID.load(Ordering::SeqCst);
    if pid == 0 {
        return;
    }
    // SIGQUIT: PostgreSQL's immediate shutdown (its children go with it).
    // SAFETY: signalling the child this process started.
    unsafe {
        libc::kill(pid as i32, libc::SIGQUIT);
    }
    let started = Instant::now();
    let mut status = 0;
    while started.elapsed() < Duration::from_secs(10) {
        // SAFETY: reaping our own child.
        if unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) } != 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some(dir) = DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

impl Cluster {
    fn start(base: &Path) -> Result<Cluster, String> {
        let bin = bin_dir()?;
        let dir = base.join(format!("postgres-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let owner = run_as();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", dir.display()))?;
        }
        let data = dir.join("data");
        let out = as_owner(&mut Command::new(bin.join("initdb")), owner)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ])
            .arg("-D")
            .arg(&data)
            .current_dir(&dir)
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        // TLS as well as plain: a CA and a certificate for 127.0.0.1, by openssl's command.
        let tls = dir.join("tls");
        std::fs::create_dir_all(&tls).map_err(|e| e.to_string())?;
        let openssl = |args: &[&str]| -> Result<(), String> {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&tls)
                .output()
                .map_err(|e| format!("openssl (Debian's package openssl): {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "openssl {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "3",
                    "-subj",
                    "/CN=ad-sync test PostgreSQL CA",
                ],
            ]
            .concat(),
        )?;
        openssl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=127.0.0.1",
                ],
            ]
            .concat(),
        )?;
        std::fs::write(tls.join("san.ext"), "subjectAltName=IP:127.0.0.1\n")
            .map_err(|e| e.to_string())?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "3",
            "-extfile",
            "san.ext",
        ])?;
        for f in ["server.key", "server.crt"] {
            let path = tls.join(f);
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .map_err(|e| e.to_string())?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("postgres.log")).map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = owner {
            let _ = std::os::unix::fs::chown(dir.join("postgres.log"), Some(uid), Some(gid));
        }
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = as_owner(&mut Command::new(bin.join("postgres")), owner)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=64MB",
                "-c",
                "ssl=on",
                "-c",
                "log_connections=on",
            ])
            .arg("-c")
            .arg(format!(
                "ssl_cert_file={}",
                tls.join("server.crt").display()
            ))
            .arg("-c")
            .arg(format!("ssl_key_file={}", tls.join("server.key").display()))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("start postgres: {e}"))?;
        PID.store(child.id(), Ordering::SeqCst);
        let _ = DIR.set(dir.clone());
        // SAFETY: registering a plain extern "C" function.
        unsafe {
            libc::atexit(stop_at_exit);
        }
        let cluster = Cluster {
            ca: tls.join("ca.pem"),
            dir,
            port,
            bin,
            pid: child.id(),
            next: AtomicU32::new(0),
        };
        let started = Instant::now();
        loop {
            let ready = Command::new(cluster.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(cluster);
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err(format!(
                    "postgres did not become ready on port {port}: {}",
                    std::fs::read_to_string(cluster.dir.join("postgres.log")).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A new empty database, as an address for `--db`.
    pub fn new_database(&self, tag: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let name: String = format!("{tag}_{n}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let out = Command::new(self.bin.join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                &name,
            ])
            .output()
            .unwrap_or_else(|e| panic!("createdb: {e}"));
        assert!(
            out.status.success(),
            "createdb {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs SQL with psql against a database address; its rows, one line each, columns
    /// separated by `|`.
    pub fn psql(&self, url: &str, sql: &str) -> Vec<String> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                url,
                "-c",
                sql,
            ])
            .output()
            .unwrap_or_else(|e| panic!("psql: {e}"));
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// What the server logged (its connections among it).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }

    /// Everything a database holds, as `pg_dump` writes it.
    pub fn dump(&self, url: &str) -> Vec<u8> {
        let out = Command::new(self.bin.join("pg_dump"))
            .args(["-d", url])
            .output()
            .unwrap_or_else(|e| panic!("pg_dump: {e}"));
        assert!(
            out.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

/// The cluster of this test binary, started on first use.
pub fn cluster(base: &Path) -> &'static Cluster {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match CLUSTER.get_or_init(|| Cluster::start(base)) {
        Ok(c) => c,
        Err(e) => panic!("the test PostgreSQL cluster could not be started: {e}"),
    }
}

/// Whether this run's clouds keep their state in PostgreSQL: `AD_SYNC_TEST_CLOUD_DB=postgres`
/// (dev/test runs tests/cloud.rs once on each backend).
pub fn clouds_on_postgres() -> bool {
    std::env::var("AD_SYNC_TEST_CLOUD_DB").is_ok_and(|v| v == "postgres")
}
