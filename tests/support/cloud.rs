//! A real `ad-sync-cloud serve` for tests: its own folder (database, self-signed TLS, logs) on a
//! free loopback port, and its admin subcommands run as the binary, against the same database.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ad_sync::cloud::client::{CloudClient, CloudOptions};

/// The reference cloud's binary (built on first use).
pub fn bin() -> &'static str {
    super::bins::cloud()
}

pub struct CloudServer {
    pub dir: PathBuf,
    pub db: PathBuf,
    pub tls: PathBuf,
    pub url: String,
    pub ca: PathBuf,
    extra: Vec<String>,
    listen: String,
    /// The open-files limit to start the server with (`None`: this process's).
    nofile: Option<u64>,
    child: Option<Child>,
    starts: u32,
}

fn fresh_dir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cloud-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

impl CloudServer {
    /// Starts a server on 127.0.0.1 with `extra` serve flags.
    pub fn start(tag: &str, extra: &[&str]) -> CloudServer {
        Self::start_on(tag, "127.0.0.1:0", extra)
    }

    /// A server on 127.0.0.1 that may open at most `nofile` files (as under `ulimit -n`).
    pub fn start_limited(tag: &str, extra: &[&str], nofile: u64) -> CloudServer {
        Self::launch(tag, "127.0.0.1:0", extra, Some(nofile))
    }

    pub fn start_on(tag: &str, listen: &str, extra: &[&str]) -> CloudServer {
        Self::launch(tag, listen, extra, None)
    }

    /// A server on 127.0.0.1 whose self-signed certificates Wine 8.0 can verify, for the
    /// Windows programs under Wine (see `wine_verifiable_tls`).
    pub fn start_for_wine(tag: &str, extra: &[&str]) -> CloudServer {
        Self::launch_with(tag, "127.0.0.1:0", extra, None, wine_verifiable_tls)
    }

    fn launch(tag: &str, listen: &str, extra: &[&str], nofile: Option<u64>) -> CloudServer {
        Self::launch_with(tag, listen, extra, nofile, |_| {})
    }

    /// A server keeping its state in its SQLite file, whatever `AD_SYNC_TEST_CLOUD_DB` says.
    pub fn start_on_sqlite(tag: &str, extra: &[&str]) -> CloudServer {
        Self::launch_in(tag, "127.0.0.1:0", extra, None, |_| {}, false)
    }

    /// A server keeping its state in a new database of the tests' PostgreSQL cluster, whatever
    /// `AD_SYNC_TEST_CLOUD_DB` says.
    pub fn start_on_postgres(tag: &str, extra: &[&str]) -> CloudServer {
        Self::launch_in(tag, "127.0.0.1:0", extra, None, |_| {}, true)
    }

    /// `seed_tls` may write the `--self-signed` folder's files first; the server keeps files
    /// it finds there and makes them only when missing.
    fn launch_with(
        tag: &str,
        listen: &str,
        extra: &[&str],
        nofile: Option<u64>,
        seed_tls: impl FnOnce(&Path),
    ) -> CloudServer {
        let postgres = super::postgres::clouds_on_postgres();
        Self::launch_in(tag, listen, extra, nofile, seed_tls, postgres)
    }

    fn launch_in(
        tag: &str,
        listen: &str,
        extra: &[&str],
        nofile: Option<u64>,
        seed_tls: impl FnOnce(&Path),
        postgres: bool,
    ) -> CloudServer {
        let dir = fresh_dir(tag);
        seed_tls(&dir.join("tls"));
        let db = if postgres {
            PathBuf::from(
                super::postgres::cluster(Path::new(env!("CARGO_TARGET_TMPDIR"))).new_database(tag),
            )
        } else {
            dir.join("cloud.db")
        };
        let mut s = CloudServer {
            db,
            tls: dir.join("tls"),
            ca: dir.join("tls").join("ca.pem"),
            url: String::new(),
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            listen: listen.to_string(),
            nofile,
            child: None,
            starts: 0,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let out_path = self.dir.join(format!("stdout-{}.txt", self.starts));
        let out = std::fs::File::create(&out_path).unwrap_or_else(|e| panic!("{e}"));
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = Command::new(bin());
        if let Some(n) = self.nofile {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: setrlimit is async-signal-safe and touches only the child.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = cmd
            .arg("serve")
            .arg("--db")
            .arg(&self.db)
            .arg("--listen")
            .arg(&self.listen)
            .arg("--self-signed")
            .arg(&self.tls)
            .args(&self.extra)
            .env("AD_SYNC_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start ad-sync-cloud: {e}"));
        super::stop_at_exit([child.id()]);
        self.child = Some(child);
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(&out_path).unwrap_or_default();
            if let Some(line) = text.lines().next()
                && let Some(url) = line.strip_prefix("ad-sync-cloud listening on ")
            {
                self.url = url.trim().to_string();
                break;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("ad-sync-cloud exited with {status}: {}", self.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "ad-sync-cloud did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Another node of this cloud: a second `serve` process on the same database and the same
    /// certificates (so a client trusting one trusts all), on its own port and folder for its
    /// output, with `extra` serve flags.
    pub fn node(&self, extra: &[&str]) -> CloudServer {
        let dir = fresh_dir("node");
        let mut s = CloudServer {
            db: self.db.clone(),
            tls: self.tls.clone(),
            ca: self.ca.clone(),
            url: String::new(),
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            listen: "127.0.0.1:0".into(),
            nofile: None,
            child: None,
            starts: 0,
        };
        s.spawn();
        s
    }

    /// Kills the server at once (SIGKILL), as a machine lost would stop it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server the way a service manager does (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: plain kill(2) on a child this process started.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
            panic!("ad-sync-cloud did not stop on SIGTERM within 10 s");
        }
    }

    /// Stops and starts again on the same folder (database and certificates).
    pub fn restart(&mut self) {
        self.stop();
        // The same port would do, but port 0 again proves nothing depends on it.
        self.spawn();
    }

    /// What the running server printed on stdout.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("stdout-{}.txt", self.starts)))
            .unwrap_or_default()
    }

    /// Runs an admin subcommand against this server's database.
    pub fn admin(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(bin());
        cmd.args(args).arg("--db").arg(&self.db);
        cmd.output()
            .unwrap_or_else(|e| panic!("run ad-sync-cloud {args:?}: {e}"))
    }

    /// An admin subcommand that must succeed; its stdout.
    pub fn admin_ok(&self, args: &[&str]) -> String {
        let out = self.admin(args);
        assert!(
            out.status.success(),
            "ad-sync-cloud {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Issues a key; the key alone is the last line of stdout.
    pub fn issue_key(&self, domain: &str, ttl: Option<&str>) -> String {
        let mut args = vec!["key", "issue", "--domain", domain];
        if let Some(t) = ttl {
            args.extend(["--ttl", t]);
        }
        let out = self.admin_ok(&args);
        out.lines()
            .last()
            .unwrap_or_else(|| panic!("key issue printed nothing"))
            .trim()
            .to_string()
    }

    /// Everything the server logged so far.
    /// Enrolls a throwaway agent with `key`, so the key is used up.
    pub fn use_up(&self, key: &str, domain: &str) {
        let pair = ad_sync::cloud::sealed::generate_key_pair();
        let k = ad_sync::connect_key::ConnectKey::parse(key).unwrap_or_else(|e| panic!("{e}"));
        block_on(
            self.client()
                .enroll(&k, domain, "other", "0.1.0", "linux", &pair.public_key),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Whether this cloud keeps its state in PostgreSQL (else in its SQLite file).
    pub fn on_postgres(&self) -> bool {
        self.db
            .to_str()
            .is_some_and(|d| d.starts_with("postgres://"))
    }

    /// Runs a statement on the cloud's database, past the cloud (as an operator or an attacker
    /// with the database could): its rows, columns joined by `|`.
    pub fn sql(&self, statement: &str) -> Vec<String> {
        if self.on_postgres() {
            let cluster = super::postgres::cluster(Path::new(env!("CARGO_TARGET_TMPDIR")));
            return cluster.psql(&self.db.to_string_lossy(), statement);
        }
        let db = rusqlite::Connection::open(&self.db).unwrap_or_else(|e| panic!("{e}"));
        let mut st = db
            .prepare(statement)
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
        let n = st.column_count();
        st.query_map([], |r| {
            (0..n)
                .map(|i| {
                    Ok(match r.get_ref(i)? {
                        rusqlite::types::ValueRef::Null => String::new(),
                        rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                        rusqlite::types::ValueRef::Real(f) => f.to_string(),
                        rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                            String::from_utf8_lossy(t).into_owned()
                        }
                    })
                })
                .collect::<rusqlite::Result<Vec<String>>>()
                .map(|cols| cols.join("|"))
        })
        .and_then(|rows| rows.collect())
        .unwrap_or_else(|e| panic!("{statement}: {e}"))
    }

    /// Every byte the cloud's database holds: the SQLite file and its write-ahead log, or
    /// PostgreSQL's dump of the database.
    pub fn stored_bytes(&self) -> Vec<u8> {
        if self.on_postgres() {
            let cluster = super::postgres::cluster(Path::new(env!("CARGO_TARGET_TMPDIR")));
            return cluster.dump(&self.db.to_string_lossy());
        }
        let mut all = std::fs::read(&self.db).unwrap_or_default();
        all.extend(std::fs::read(self.db.with_extension("db-wal")).unwrap_or_default());
        all
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    pub fn client(&self) -> CloudClient {
        let mut opts = CloudOptions::new(self.url.clone());
        opts.ca_file = Some(self.ca.clone());
        CloudClient::new(&opts).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The running server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {}", self.url))
    }
}

impl Drop for CloudServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A runtime for calling the client from a plain #[test].
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"))
        .block_on(f)
}

/// The `--self-signed` folder's files (`ca.pem`, `server.pem`, `server.key`), made by the
/// reference cloud's own code (`tls::load`), again until each signature's `r` and `s` are both
/// a full 32 bytes.
///
/// Why: Wine 8.0's crypt32 refuses an ECDSA certificate signature whose `r` or `s` is shorter
/// than the curve's 32 bytes (about one signature in 128: a leading zero byte, which DER drops),
/// as untrusted. Windows verifies those signatures, and the product talks to the cloud directly
/// there. Measured here: a leaf whose signature's shorter half was 31 bytes failed
/// `validate-key` under Wine every time ("not signed by a certificate authority this server
/// trusts"), and one with full halves passed; a CI run once failed three Windows tests at once
/// on a shared cloud, most likely for such a signature.
pub fn wine_verifiable_tls(dir: &Path) {
    use ad_sync::directory::cert::load_ca_file;
    use ad_sync_cloud::server::tls::{TlsSource, default_names, load};
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let source = TlsSource::SelfSigned {
        dir: dir.to_path_buf(),
        names: default_names(&listen, &[]),
    };
    let der = |name: &str| {
        load_ca_file(&dir.join(name))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .certs
    };
    for _ in 0..1000 {
        // The cloud's own `--self-signed` making (it makes the files only when missing).
        for name in ["ca.pem", "server.pem", "server.key"] {
            let _ = std::fs::remove_file(dir.join(name));
        }
        load(&source).unwrap_or_else(|e| panic!("{e}"));
        if [der("ca.pem"), der("server.pem")]
            .iter()
            .flatten()
            .all(|d| full_ecdsa_halves(d))
        {
            return;
        }
    }
    panic!("no certificates with full-length signatures in 1000 tries");
}

/// Whether a P-256 certificate's ECDSA signature has `r` and `s` of 32 bytes each (DER drops
/// leading zero bytes and adds one before a high bit: `0x00` + 32 bytes is full too).
fn full_ecdsa_halves(cert_der: &[u8]) -> bool {
    /// One DER element at the start of `der`: (tag, contents, what follows).
    fn tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = der.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (first as usize, rest)
        } else {
            let n = (first & 0x7f) as usize;
            let (bytes, rest) = (rest.get(..n)?, rest.get(n..)?);
            (bytes.iter().fold(0usize, |a, b| a << 8 | *b as usize), rest)
        };
        Some((tag, rest.get(..len)?, rest.get(len..)?))
    }
    let halves = || -> Option<bool> {
        // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, BIT STRING }
        let (_, cert, _) = tlv(cert_der)?;
        let (_, _, after_tbs) = tlv(cert)?;
        let (_, _, after_alg) = tlv(after_tbs)?;
        let (tag, bits, _) = tlv(after_alg)?;
        // The bit string's first byte counts unused bits (0), then SEQUENCE { INTEGER r, s }.
        let (0x03, Some((0, sig))) = (tag, bits.split_first()) else {
            return None;
        };
        let (_, pair, _) = tlv(sig)?;
        let (_, r, after_r) = tlv(pair)?;
        let (_, s, _) = tlv(after_r)?;
        let full = |v: &[u8]| v.iter().skip_while(|b| **b == 0).count() == 32;
        Some(full(r) && full(s))
    };
    halves().unwrap_or(false)
}

/// One server for a whole test binary (stopped at exit), with the test domain and another one.
pub fn shared() -> &'static CloudServer {
    static SHARED: std::sync::OnceLock<CloudServer> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| with_domains(CloudServer::start("shared", &[])))
}

/// The same for the Windows programs under Wine: its certificates are `wine_verifiable_tls`.
pub fn shared_for_wine() -> &'static CloudServer {
    static SHARED: std::sync::OnceLock<CloudServer> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| with_domains(CloudServer::start_for_wine("shared-wine", &[])))
}

pub fn with_domains(s: CloudServer) -> CloudServer {
    s.admin_ok(&["domain", "add", "DC=example,DC=com"]);
    s.admin_ok(&["domain", "add", "DC=other,DC=com"]);
    s
}
