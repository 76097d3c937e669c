//! Test support: the one test domain of this test binary, answers files, running the CLI.
#![allow(dead_code)]

pub mod bins;
pub mod cloud;
pub mod forged;
pub mod haproxy;
pub mod postgres;
pub mod proxy;
pub mod report;
pub mod testbed;
pub mod wine;
pub mod xwin;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, OnceLock};
use testbed::Testbed;

static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

extern "C" fn stop_testbed_at_exit() {
    let pids = PIDS.lock().map(|p| p.clone()).unwrap_or_default();
    for pid in pids {
        // SAFETY: plain kill(2) on PIDs this process started.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
    }
}

/// Waits until process `pid` has stopped itself (SIGSTOP at a fault point: `AD_SYNC_INSTALL_FAULT`,
/// `AD_SYNC_AGENT_FAULT`).
pub fn wait_stopped(pid: i32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_default()
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().next())
        != Some("T")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "process {pid} never stopped at its fault point"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Spawns `cmd` (a program with a fault point set in its environment), its output piped, and
/// waits until it has stopped itself there. Returns the child and its pid.
pub fn spawn_stopped(cmd: &mut std::process::Command) -> (std::process::Child, i32) {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let pid = child.id() as i32;
    wait_stopped(pid);
    (child, pid)
}

/// Stops a process this test binary started when the binary exits, even when a test panicked
/// while holding it in a static.
pub fn stop_at_exit(pids: impl IntoIterator<Item = u32>) {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    if let Ok(mut p) = PIDS.lock() {
        p.extend(pids);
    }
    REGISTERED.get_or_init(|| {
        // SAFETY: registering a plain extern "C" function.
        unsafe {
            libc::atexit(stop_testbed_at_exit);
        }
    });
}

/// The test domain, started on first use and stopped (by PID) when the test binary exits.
pub fn bed() -> &'static Testbed {
    static BED: OnceLock<Result<Testbed, String>> = OnceLock::new();
    let bed = BED.get_or_init(|| {
        let tb = Testbed::start(Path::new(env!("CARGO_TARGET_TMPDIR")))?;
        stop_at_exit(tb.pids());
        Ok(tb)
    });
    match bed {
        Ok(b) => b,
        Err(e) => panic!("the test domain could not be started: {e}"),
    }
}

/// The second forest (`fabrikam.test`), started on first use by this test binary and stopped
/// at its exit.
pub fn forest2() -> &'static testbed::Forest2 {
    static F2: OnceLock<Result<testbed::Forest2, String>> = OnceLock::new();
    let f = F2.get_or_init(|| {
        // The first forest first: both change /etc/hosts and the loopback addresses.
        let _ = bed();
        let f = testbed::Forest2::start(Path::new(env!("CARGO_TARGET_TMPDIR")))?;
        stop_at_exit(f.pids());
        Ok(f)
    });
    match f {
        Ok(f) => f,
        Err(e) => panic!("the second test forest could not be started: {e}"),
    }
}

/// An answers file, good by default (dc1, LDAPS trusted through its CA, delegated OU=Staff).
#[derive(Clone)]
pub struct Spec {
    pub server_type: &'static str,
    pub dc_host: Option<String>,
    pub security: &'static str,
    pub port: Option<u16>,
    pub ca_file: Option<PathBuf>,
    pub fallback: bool,
    pub root_dn: String,
    pub sync_group_dn: Option<String>,
    pub username: String,
    pub password: String,
    /// Written to a file beside the answers and named by `[cloud] connect_key_file`.
    pub connect_key: Option<String>,
    /// `[cloud] url` and `ca_file`.
    pub cloud_url: Option<String>,
    pub cloud_ca: Option<PathBuf>,
}

impl Spec {
    pub fn good() -> Spec {
        let b = bed();
        Spec {
            server_type: "member",
            dc_host: Some(testbed::DC1_HOST.into()),
            security: "ldaps",
            port: None,
            ca_file: Some(b.dc1.ca_file.clone()),
            fallback: false,
            root_dn: "OU=Staff;DC=example;DC=com".into(),
            sync_group_dn: Some("CN=Cloud Groups;OU=Staff;DC=example;DC=com".into()),
            username: format!("EXAMPLE\\{}", testbed::accounts::GOOD),
            password: testbed::SVC_PASSWORD.into(),
            connect_key: None,
            cloud_url: None,
            cloud_ca: None,
        }
    }

    pub fn user(mut self, sam: &str) -> Spec {
        self.username = format!("EXAMPLE\\{sam}");
        self
    }

    /// The TOML text; the password goes to a file beside it, never inline.
    pub fn toml(&self) -> String {
        let mut t = format!("version = 1\n\n[server]\ntype = \"{}\"\n", self.server_type);
        if let Some(h) = &self.dc_host {
            t.push_str(&format!("dc_host = \"{h}\"\n"));
        }
        t.push_str(&format!("\n[ldap]\nsecurity = \"{}\"\n", self.security));
        if let Some(p) = self.port {
            t.push_str(&format!("port = {p}\n"));
        }
        t.push_str(&format!("allow_insecure_fallback = {}\n", self.fallback));
        if let Some(ca) = &self.ca_file {
            t.push_str(&format!("ca_file = '{}'\n", ca.display()));
        }
        t.push_str(&format!(
            "timeout_seconds = 5\n\n[directory]\nroot_user_dn = '{}'\n",
            self.root_dn
        ));
        if let Some(g) = &self.sync_group_dn {
            t.push_str(&format!("sync_group_dn = '{g}'\n"));
        }
        t.push_str(&format!(
            "\n[service_account]\nusername = '{}'\npassword_file = \"svc.pw\"\n",
            self.username
        ));
        if self.connect_key.is_some() || self.cloud_url.is_some() {
            t.push_str("\n[cloud]\n");
        }
        if let Some(u) = &self.cloud_url {
            t.push_str(&format!("url = '{u}'\ntimeout_seconds = 5\n"));
        }
        if let Some(ca) = &self.cloud_ca {
            t.push_str(&format!("ca_file = '{}'\n", ca.display()));
        }
        if self.connect_key.is_some() {
            t.push_str("connect_key_file = \"key.txt\"\n");
        }
        t
    }

    /// Writes the answers file and its password file into a fresh folder; returns the path.
    pub fn write(&self) -> PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("answers-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        std::fs::write(dir.join("svc.pw"), format!("{}\n", self.password))
            .unwrap_or_else(|e| panic!("write password file: {e}"));
        if let Some(k) = &self.connect_key {
            std::fs::write(dir.join("key.txt"), k)
                .unwrap_or_else(|e| panic!("write key file: {e}"));
        }
        let path = dir.join("answers.toml");
        std::fs::write(&path, self.toml()).unwrap_or_else(|e| panic!("write answers: {e}"));
        path
    }

    /// Loads the answers through the product's own loader.
    pub fn answers(&self) -> ad_sync::answers::Answers {
        let path = self.write();
        ad_sync::answers::Answers::load(&path).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Runs every preflight check in-process.
pub fn run_checks(spec: &Spec) -> ad_sync::preflight::Report {
    let answers = spec.answers();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"))
        .block_on(ad_sync::preflight::run(&answers))
}

/// Runs the `ad-sync-setup` binary with arguments.
pub fn setup_cli(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ad-sync-setup"))
        .args(args)
        .env("AD_SYNC_LOG", "trace")
        .output()
        .unwrap_or_else(|e| panic!("run ad-sync-setup: {e}"))
}

/// The DC's CA as Windows' certificate export writes it: DER (`.cer`) and a PKCS#7 bundle
/// (`.p7b`, made by OpenSSL's `crl2pkcs7`, not by the product's own code), in a fresh folder.
pub fn dc_ca_as_windows_exports_it() -> (std::path::PathBuf, std::path::PathBuf) {
    let pem = bed().dc1.ca_file.clone();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ca-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let openssl = |args: &[&str], out: &Path| {
        let done = std::process::Command::new("openssl")
            .args(args)
            .arg(&pem)
            .arg("-out")
            .arg(out)
            .output()
            .unwrap_or_else(|e| panic!("openssl (dev/setup-machine): {e}"));
        assert!(done.status.success(), "openssl {args:?}: {done:?}");
    };
    let der = dir.join("dc-ca.cer");
    openssl(&["x509", "-outform", "DER", "-in"], &der);
    let p7b = dir.join("dc-ca.p7b");
    openssl(
        &["crl2pkcs7", "-nocrl", "-outform", "DER", "-certfile"],
        &p7b,
    );
    (der, p7b)
}
