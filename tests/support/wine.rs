//! A Windows member server for tests: the `x86_64-pc-windows-gnu` build run under Wine, in a
//! throwaway `WINEPREFIX` of its own, on the same loopback network as the test DCs and the
//! reference cloud (Wine's network stack is the host's; `dc1.example.com` resolves through the
//! host's /etc/hosts as it would through a Windows member server's DNS).
//!
//! What it adds to a fresh prefix, and why (both built here from `tests/support/wine/*.c` with
//! the mingw-w64 compiler the Windows build already needs; test-only, never shipped):
//! - `bcryptprimitives.dll` in system32: Debian's Wine 8.0 lacks it, and every Rust .exe imports
//!   its `ProcessPrng`. Windows 10 / Server 2016 and later have it.
//! - a revocation provider registered in place of cryptnet's: Wine 8.0 fails the SSL chain policy on
//!   an unknown revocation status although schannel-rs asks it to ignore that, as Windows does
//!   (fixed in Wine 10.1). See `wine/revocation.c`.
//! - `secur32.dll` beside the programs in `C:\adsync-build`, loaded by them only (a per-program
//!   DLL override): Wine's `DecryptMessage`, given part of a TLS record, reports the whole
//!   record's size as missing where Windows reports the bytes still missing, and schannel-rs
//!   then waits for bytes that never come. The stand-in passes every call to Wine's own
//!   secur32 and corrects only that count. See `wine/secur32.c`, and `TrickleRelay` for the
//!   test that shows both the defect and the stand-in.
//!
//! `Drop` ends every process of the prefix (`wineserver -k` with that prefix: the service, the
//! agent, services.exe, nothing else on the machine) and deletes the prefix.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const WINE64: &str = "/usr/lib/wine/wine64";
pub const WINESERVER: &str = "/usr/lib/wine/wineserver";

/// `target/`, where Cargo put this build (the Windows build sits beside the host one).
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// The folder of the Windows binaries CI builds before the tests (`dev/test`).
pub fn windows_build() -> PathBuf {
    target_dir().join("x86_64-pc-windows-gnu").join("debug")
}

/// `/work/x/y` as a Windows program names it (`Z:\work\x\y`: Wine maps `/` to drive Z:).
pub fn win_path(p: &Path) -> String {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|e| panic!("{e}"))
            .join(p)
    };
    format!("Z:{}", abs.display()).replace('/', "\\")
}

struct Shims {
    processprng: PathBuf,
    revocation: PathBuf,
    secur32: PathBuf,
}

/// The programs the secur32 stand-in is loaded by (and no other program of the machine).
const SECUR32_USERS: [&str; 2] = ["ad-sync-setup.exe", "ad-sync-agent.exe"];

/// Compiles the three test DLLs once per test binary.
fn shims() -> &'static Shims {
    static SHIMS: OnceLock<Shims> = OnceLock::new();
    SHIMS.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/wine");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("wine-shims-{}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
        let build = |name: &str, libs: &[&str]| {
            let dll = out.join(format!("{name}.dll"));
            let status = Command::new("x86_64-w64-mingw32-gcc")
                .args(["-shared", "-O2", "-Wall", "-Werror", "-o"])
                .arg(&dll)
                .arg(src.join(format!("{name}.c")))
                .args(libs)
                .status()
                .unwrap_or_else(|e| {
                    panic!("x86_64-w64-mingw32-gcc (gcc-mingw-w64-x86-64, dev/setup-machine): {e}")
                });
            assert!(status.success(), "building {name}.dll failed");
            dll
        };
        Shims {
            processprng: build("processprng", &["-ladvapi32"]),
            revocation: build("revocation", &["-lcrypt32"]),
            secur32: build("secur32", &[]),
        }
    })
}

pub struct WinHost {
    /// The WINEPREFIX: this "server"'s C: drive is `prefix/drive_c`.
    pub prefix: PathBuf,
    /// `C:\adsync-build`: the Windows build as an administrator would have unpacked it.
    pub bin: PathBuf,
    display: Option<String>,
}

impl WinHost {
    /// A fresh Windows machine without a display (about 10 s: `wineboot -i`).
    pub fn start(tag: &str) -> WinHost {
        Self::boot(tag, None, &windows_build())
    }

    /// The same with the Windows binaries from `build` (the bench takes the release build).
    pub fn start_from(tag: &str, build: &Path) -> WinHost {
        Self::boot(tag, None, build)
    }

    /// A fresh Windows machine with a desktop on the X display `display` (Wine's desktop takes
    /// its graphics driver from the display it boots on).
    pub fn start_with_display(tag: &str, display: &str) -> WinHost {
        Self::boot(tag, Some(display.to_string()), &windows_build())
    }

    fn boot(tag: &str, display: Option<String>, build: &Path) -> WinHost {
        for exe in ["ad-sync-setup.exe", "ad-sync-agent.exe"] {
            assert!(
                build.join(exe).is_file(),
                "{} is missing: build the Windows binaries first (`cargo build --target x86_64-pc-windows-gnu --bins`, as dev/test does)",
                build.join(exe).display()
            );
        }
        assert!(
            Path::new(WINE64).is_file(),
            "{WINE64} is missing: install wine64 (dev/setup-machine does)"
        );
        let shims = shims();
        let prefix = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("wine-{tag}-{}", std::process::id()));
        if prefix.exists() {
            std::fs::remove_dir_all(&prefix).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::create_dir_all(&prefix).unwrap_or_else(|e| panic!("{e}"));
        let host = WinHost {
            bin: prefix.join("drive_c/adsync-build"),
            prefix,
            display,
        };
        let boot = host.wine(&["wineboot", "-i"], Duration::from_secs(180));
        assert!(
            boot.status.success(),
            "wineboot failed: {}",
            String::from_utf8_lossy(&boot.stderr)
        );
        // Then the machine stays up between commands: without -p, the wineserver (and with it
        // the Service Control Manager and what it knows) goes away 3 s after the last program.
        // Only after the first boot has wound down: a persistent server during the first boot
        // ends up with two services.exe, and the second holds the service database locked.
        for arg in ["-w", "-p"] {
            assert!(host.wineserver(arg), "{WINESERVER} {arg} failed");
        }
        let system32 = host.prefix.join("drive_c/windows/system32");
        std::fs::copy(&shims.processprng, system32.join("bcryptprimitives.dll"))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::copy(
            &shims.revocation,
            system32.join("adsync-test-revocation.dll"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        host.revocation_providers("adsync-test-revocation.dll");
        // The test DCs' names in this machine's hosts file, as they are in the Linux machine's
        // (a member server finds them in the domain's DNS; the test domain's DNS has no address
        // records for its loopback DCs, see `testbed::HOSTS`). Wine's own lookups read /etc/hosts; programs that ask a
        // DNS server themselves, as discovery does, read Windows' hosts file.
        let hosts = host
            .prefix
            .join("drive_c/windows/system32/drivers/etc/hosts");
        let mut text = std::fs::read_to_string(&hosts).unwrap_or_default();
        for (ip, name) in super::testbed::HOSTS {
            text.push_str(&format!("{ip} {name}\r\n"));
        }
        std::fs::create_dir_all(hosts.parent().unwrap_or(Path::new(".")))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&hosts, text).unwrap_or_else(|e| panic!("{}: {e}", hosts.display()));
        std::fs::create_dir_all(&host.bin).unwrap_or_else(|e| panic!("{e}"));
        for exe in ["ad-sync-setup.exe", "ad-sync-agent.exe"] {
            std::fs::copy(build.join(exe), host.bin.join(exe)).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::copy(&shims.secur32, host.bin.join("secur32.dll"))
            .unwrap_or_else(|e| panic!("{e}"));
        host.secur32_load_order("native,builtin");
        host
    }

    /// Leaves the secur32 stand-in out: Wine's own `DecryptMessage` count, for the test that
    /// shows the defect the stand-in is for.
    pub fn without_secur32_stand_in(&self) {
        self.secur32_load_order("builtin");
    }

    /// Where the product's programs take secur32.dll from: `native,builtin` finds the stand-in
    /// beside them first (programs elsewhere, such as the installed service under Program
    /// Files, find none there and use Wine's); `builtin` always Wine's.
    fn secur32_load_order(&self, order: &str) {
        for exe in SECUR32_USERS {
            let key = format!(r"HKCU\Software\Wine\AppDefaults\{exe}\DllOverrides");
            let out = self.reg_add(&[&key, "/v", "secur32", "/d", order, "/f"]);
            assert!(
                out.status.success(),
                "setting secur32's load order for {exe} failed: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }

    /// Leaves the revocation provider out: Wine 8.0's own chain policy, for the test that the
    /// product names a revocation failure for what it is.
    pub fn without_revocation_provider(&self) {
        self.revocation_providers("cryptnet.dll");
    }

    /// Which DLLs CertVerifyRevocation asks, in the machine's registry.
    fn revocation_providers(&self, dlls: &str) {
        let out = self.reg_add(&[
                r"HKLM\Software\Microsoft\Cryptography\OID\EncodingType 1\CertDllVerifyRevocation\DEFAULT",
                "/v",
                "Dll",
                "/t",
                "REG_MULTI_SZ",
                "/d",
                dlls,
                "/f",
        ]);
        assert!(
            out.status.success(),
            "setting the revocation providers failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    /// `reg add <args>` in this machine's registry, tried up to three times: under a loaded
    /// machine Wine's `reg` has exited 1 with no output once while wineserver was still
    /// saving the registry of the previous command (a CI rehearsal); a refusal that repeats
    /// is returned as it is.
    pub fn reg_add(&self, args: &[&str]) -> Output {
        let mut all = vec!["reg", "add"];
        all.extend_from_slice(args);
        let mut out = self.wine(&all, Duration::from_secs(60));
        for _ in 0..2 {
            if out.status.success() {
                break;
            }
            std::thread::sleep(Duration::from_secs(2));
            out = self.wine(&all, Duration::from_secs(60));
        }
        out
    }

    /// A command run in this machine: `wine64 <args>`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(WINE64);
        c.args(args)
            .env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            // No Mono or Gecko install prompts: nothing here needs .NET or a browser.
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .env_remove("DISPLAY")
            .stdin(Stdio::null());
        if let Some(d) = &self.display {
            c.env("DISPLAY", d);
        }
        c
    }

    /// Runs `wine64 <args>` to completion within `limit` (killed after it, and the test fails).
    pub fn wine(&self, args: &[&str], limit: Duration) -> Output {
        run_limited(self.command(args), limit, &args.join(" "))
    }

    /// Runs one of the product's programs from `C:\adsync-build`.
    pub fn exe(&self, name: &str, args: &[&str]) -> Output {
        self.exe_within(name, args, Duration::from_secs(240))
    }

    /// The same with its own time limit.
    pub fn exe_within(&self, name: &str, args: &[&str], limit: Duration) -> Output {
        let exe = self.bin.join(name);
        let exe = exe.to_string_lossy().to_string();
        let mut all = vec![exe.as_str()];
        all.extend_from_slice(args);
        let mut c = self.command(&all);
        c.env("AD_SYNC_LOG", "info");
        run_limited(c, limit, &format!("{name} {}", args.join(" ")))
    }

    /// `ad-sync-setup.exe install --answers ANSWERS --no-start --json`, from `C:\adsync-build`.
    pub fn install_no_start(&self, answers: &Path) -> Output {
        self.exe(
            "ad-sync-setup.exe",
            &[
                "install",
                "--answers",
                &win_path(answers),
                "--no-start",
                "--json",
            ],
        )
    }

    /// The same with standard input.
    pub fn exe_stdin(&self, name: &str, args: &[&str], input: &str) -> Output {
        let exe = self.bin.join(name).to_string_lossy().to_string();
        let mut all = vec![exe.as_str()];
        all.extend_from_slice(args);
        let mut c = self.command(&all);
        c.env("AD_SYNC_LOG", "info");
        run_with_input(
            c,
            Some(input),
            Duration::from_secs(240),
            &format!("{name} {}", args.join(" ")),
        )
    }

    /// `C:\<rel>` as a path on this (Linux) machine.
    pub fn c(&self, rel: &str) -> PathBuf {
        self.prefix.join("drive_c").join(rel.replace('\\', "/"))
    }

    /// `sc.exe <args>` (Wine's Service Control Manager client).
    pub fn sc(&self, args: &[&str]) -> Output {
        let mut all = vec!["sc.exe"];
        all.extend_from_slice(args);
        self.wine(&all, Duration::from_secs(120))
    }

    /// `reg query <key>`: what the SCM stored for a service, where `sc qc` prints nothing.
    pub fn reg_query(&self, key: &str) -> Option<String> {
        let out = self.wine(&["reg", "query", key], Duration::from_secs(60));
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// Ends every process of this prefix, waits for it, and frees the disk.
    pub fn stop(&mut self) {
        if !self.prefix.exists() {
            return;
        }
        // -k ends every process of this prefix; -w waits until its wineserver has gone.
        if self.wineserver("-k") {
            self.wineserver("-w");
        }
        std::fs::remove_dir_all(&self.prefix).ok();
    }
}

impl WinHost {
    /// `wineserver ARG` for this prefix only; whether it ran and succeeded.
    fn wineserver(&self, arg: &str) -> bool {
        Command::new(WINESERVER)
            .arg(arg)
            .env("WINEPREFIX", &self.prefix)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for WinHost {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run_limited(c: Command, limit: Duration, what: &str) -> Output {
    run_with_input(c, None, limit, what)
}

fn run_with_input(mut c: Command, input: Option<&str>, limit: Duration, what: &str) -> Output {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    if input.is_some() {
        c.stdin(Stdio::piped());
    }
    let mut child = c
        .spawn()
        .unwrap_or_else(|e| panic!("start wine64 {what}: {e}"));
    if let (Some(text), Some(mut si)) = (input, child.stdin.take()) {
        use std::io::Write as _;
        si.write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("{what}: writing standard input: {e}"));
    }
    // The pipes are read on threads into shared buffers: Windows processes the program starts
    // (services.exe on first use) inherit them and live as long as the machine, so the pipes
    // reach end-of-file only when the prefix stops. What the program itself wrote is there once
    // it has exited.
    let collect = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = buf.clone();
        std::thread::spawn(move || {
            let Some(mut pipe) = pipe else { return };
            let mut chunk = [0u8; 8192];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if let Ok(mut b) = sink.lock() {
                            b.extend_from_slice(&chunk[..n]);
                        }
                    }
                }
            }
        });
        buf
    };
    use std::io::Read as _;
    let out = collect(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let err = collect(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                child.kill().ok();
                child.wait().ok();
                // What it had written by then says where it stood (its log is on stderr).
                std::thread::sleep(Duration::from_millis(200));
                let tail = |b: &std::sync::Arc<std::sync::Mutex<Vec<u8>>>| {
                    let v = b.lock().map(|v| v.clone()).unwrap_or_default();
                    let text = String::from_utf8_lossy(&v).into_owned();
                    let start = text.len().saturating_sub(6000);
                    let start = (start..=text.len())
                        .find(|i| text.is_char_boundary(*i))
                        .unwrap_or(text.len());
                    text[start..].to_string()
                };
                panic!(
                    "wine64 {what} did not finish within {} s\n--- its standard output so far (end):\n{}\n--- its standard error so far (end):\n{}",
                    limit.as_secs(),
                    tail(&out),
                    tail(&err)
                );
            }
            Err(e) => panic!("wine64 {what}: {e}"),
        }
    };
    // The last bytes the program wrote before it exited are read within moments.
    std::thread::sleep(Duration::from_millis(100));
    let take = |b: &std::sync::Arc<std::sync::Mutex<Vec<u8>>>| {
        b.lock().map(|v| v.clone()).unwrap_or_default()
    };
    Output {
        status,
        stdout: take(&out),
        stderr: take(&err),
    }
}

/// A TLS relay between a Windows program under Wine and a real TLS server (the Samba DC, the
/// reference cloud), for two Wine defects. The first: Wine's SChannel `DecryptMessage`, given
/// part of a TLS record, reports the *whole* record's size as missing in the second buffer
/// (Windows reports the bytes still missing), and schannel-rs then waits for bytes that never
/// come. The secur32 stand-in (`wine/secur32.c`) corrects that for the programs in
/// `C:\adsync-build`; the programs the product's own install or the MSI put under Program
/// Files have no stand-in beside them (the test bed does not write into the product's folder),
/// and the relay keeps every record they receive whole. Windows has neither defect, and the
/// product talks to its DC directly there; `tests/windows_tls.rs` does too.
///
/// The relay presents the server's own certificate and key (so the Windows client verifies
/// what it would verify at the server), followed by the CA that issued it, as AD CS-issued DCs
/// send theirs: Wine 8.0's SSL policy does not check `CERT_TRUST_IS_PARTIAL_CHAIN`, so a lone
/// leaf whose issuer it cannot find (what Samba sends) passes there with no CA trusted at all,
/// where Windows refuses it (CERT_E_CHAINING); with the issuer sent, an untrusted CA is an
/// untrusted root, which Wine does refuse. It forwards requests as they are, and sends each
/// response in TLS records of at most 900 bytes, one at a time: the next only once the client
/// has read the previous one out of its socket (its receive queue in /proc/net/tcp is empty).
/// The client then never holds a partial record. Content, order and timing of the protocol are
/// unchanged.
pub struct TlsRelay {
    pub port: u16,
    _listening: Listening,
}

impl TlsRelay {
    /// `cert_pem` and `key_pem` are the server's (any PEM key form); `upstream` is the server,
    /// reached as `upstream_name`, trusted through `upstream_ca`, which is also sent after the
    /// certificate.
    pub fn start(
        cert_pem: &Path,
        key_pem: &Path,
        upstream: std::net::SocketAddr,
        upstream_name: &str,
        upstream_ca: &Path,
    ) -> TlsRelay {
        let mut cert =
            std::fs::read(cert_pem).unwrap_or_else(|e| panic!("{}: {e}", cert_pem.display()));
        if !cert.ends_with(b"\n") {
            cert.push(b'\n');
        }
        cert.extend(std::fs::read(upstream_ca).unwrap_or_else(|e| panic!("{e}")));
        let key = pkcs8(key_pem);
        let identity = native_tls::Identity::from_pkcs8(&cert, &key)
            .unwrap_or_else(|e| panic!("relay identity: {e}"));
        let acceptor = tokio_native_tls::TlsAcceptor::from(
            native_tls::TlsAcceptor::new(identity).unwrap_or_else(|e| panic!("{e}")),
        );
        let ca = std::fs::read(upstream_ca).unwrap_or_else(|e| panic!("{e}"));
        let connector = tokio_native_tls::TlsConnector::from(
            native_tls::TlsConnector::builder()
                .add_root_certificate(
                    native_tls::Certificate::from_pem(&ca).unwrap_or_else(|e| panic!("{e}")),
                )
                .build()
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let name = upstream_name.to_string();
        let listening = Listening::start(move |tcp, peer, port| {
            let acceptor = acceptor.clone();
            let connector = connector.clone();
            let name = name.clone();
            async move { relay_one(tcp, peer, port, acceptor, connector, upstream, &name).await }
        });
        TlsRelay {
            port: listening.port,
            _listening: listening,
        }
    }
}

/// A listener on 127.0.0.1 with a runtime and thread of its own, handing every connection to
/// `one(connection, client address, own port)`; stopped and joined when dropped.
struct Listening {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listening {
    fn start<F, Fut>(one: F) -> Listening
    where
        F: Fn(tokio::net::TcpStream, std::net::SocketAddr, u16) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("relay: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("{e}"));
        let port = listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("{e}"));
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("{e}"));
            rt.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).unwrap_or_else(|e| panic!("{e}"));
                loop {
                    tokio::select! {
                        _ = &mut rx => break,
                        accepted = listener.accept() => {
                            let Ok((tcp, peer)) = accepted else { continue };
                            tokio::spawn(one(tcp, peer, port));
                        }
                    }
                }
            });
            rt.shutdown_timeout(Duration::from_secs(2));
        });
        Listening {
            port,
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            tx.send(()).ok();
        }
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}

/// The key as PKCS#8 PEM, which native-tls's server identity takes (Samba writes PKCS#1).
fn pkcs8(key_pem: &Path) -> Vec<u8> {
    let text = std::fs::read(key_pem).unwrap_or_else(|e| panic!("{}: {e}", key_pem.display()));
    if text.starts_with(b"-----BEGIN PRIVATE KEY-----") {
        return text;
    }
    let out = Command::new("openssl")
        .args(["pkcs8", "-topk8", "-nocrypt", "-in"])
        .arg(key_pem)
        .output()
        .unwrap_or_else(|e| panic!("openssl (dev/setup-machine): {e}"));
    assert!(out.status.success(), "openssl pkcs8 failed");
    out.stdout
}

async fn relay_one(
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    port: u16,
    acceptor: tokio_native_tls::TlsAcceptor,
    connector: tokio_native_tls::TlsConnector,
    upstream: std::net::SocketAddr,
    name: &str,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp.set_nodelay(true).ok();
    let Ok(client) = acceptor.accept(tcp).await else {
        return;
    };
    let Ok(up_tcp) = tokio::net::TcpStream::connect(upstream).await else {
        return;
    };
    let Ok(server) = connector.connect(name, up_tcp).await else {
        return;
    };
    let (mut c_read, mut c_write) = tokio::io::split(client);
    let (mut s_read, mut s_write) = tokio::io::split(server);
    let requests = async move {
        tokio::io::copy(&mut c_read, &mut s_write).await.ok();
        s_write.shutdown().await.ok();
    };
    let responses = async move {
        let mut buf = vec![0u8; 900];
        loop {
            let n = match s_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if c_write.write_all(&buf[..n]).await.is_err() || c_write.flush().await.is_err() {
                break;
            }
            wait_until_read(peer, port).await;
        }
        c_write.shutdown().await.ok();
    };
    tokio::join!(requests, responses);
}

/// Waits until the client's socket (`peer` → 127.0.0.1:`port`) has nothing left unread.
async fn wait_until_read(peer: std::net::SocketAddr, port: u16) {
    let std::net::SocketAddr::V4(v4) = peer else {
        return;
    };
    let hex = |ip: std::net::Ipv4Addr, p: u16| {
        format!("{:08X}:{:04X}", u32::from_le_bytes(ip.octets()), p)
    };
    let local = hex(*v4.ip(), v4.port());
    let remote = hex(std::net::Ipv4Addr::LOCALHOST, port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        let queued = table.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 4 && f[1] == local && f[2] == remote).then(|| {
                f[4].split(':')
                    .nth(1)
                    .and_then(|rx| u32::from_str_radix(rx, 16).ok())
                    .unwrap_or(0)
            })
        });
        match queued {
            Some(0) | None => return,
            Some(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

/// A TCP relay that hands a Windows program under Wine the server's bytes a few at a time: the
/// TLS records of every answer (LDAPS, StartTLS once it has started, HTTPS) arrive cut into
/// pieces of 1, 2, 3 … `TrickleRelay::LARGEST` bytes in turn, each only once the client has
/// read the one before out of its socket (its receive queue in /proc/net/tcp is empty), so
/// every read the client makes ends inside a record, at a different place each time: in the
/// 5-byte record header at each of its boundaries, and anywhere in the body. Requests pass as
/// they are. It does not end TLS: the client talks to the server itself, with the server's own
/// certificate, and the bytes are the server's, unchanged.
///
/// This is the read path the Wine `DecryptMessage` defect breaks (see `wine/secur32.c`): with
/// the stand-in every answer is read; without it the first answer whose last record arrives in
/// two pieces hangs.
pub struct TrickleRelay {
    pub port: u16,
    /// How many pieces the server's bytes were cut into so far, over all connections.
    pieces: std::sync::Arc<std::sync::atomic::AtomicU64>,
    _listening: Listening,
}

impl TrickleRelay {
    /// The largest piece, in bytes: pieces go 1, 2, … this, then start again at 1.
    pub const LARGEST: usize = 31;

    pub fn start(upstream: std::net::SocketAddr) -> TrickleRelay {
        let pieces = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = pieces.clone();
        let listening = Listening::start(move |tcp, peer, port| {
            trickle_one(tcp, peer, port, upstream, counted.clone())
        });
        TrickleRelay {
            port: listening.port,
            pieces,
            _listening: listening,
        }
    }

    pub fn pieces(&self) -> u64 {
        self.pieces.load(std::sync::atomic::Ordering::Relaxed)
    }
}

async fn trickle_one(
    client: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    port: u16,
    upstream: std::net::SocketAddr,
    pieces: std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    client.set_nodelay(true).ok();
    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
        return;
    };
    server.set_nodelay(true).ok();
    let (mut c_read, mut c_write) = client.into_split();
    let (mut s_read, mut s_write) = server.into_split();
    let requests = async move {
        tokio::io::copy(&mut c_read, &mut s_write).await.ok();
        s_write.shutdown().await.ok();
    };
    let answers = async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut size = 0;
        'read: loop {
            let n = match s_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut at = 0;
            while at < n {
                size = size % TrickleRelay::LARGEST + 1;
                let end = (at + size).min(n);
                if c_write.write_all(&buf[at..end]).await.is_err() {
                    break 'read;
                }
                pieces.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                wait_until_read(peer, port).await;
                at = end;
            }
        }
        c_write.shutdown().await.ok();
    };
    tokio::join!(requests, answers);
}
