//! Servers that stand for someone in the network path: an HTTPS "cloud" that redirects to a
//! plain listener, and an "LDAPS" server with a certificate of its own beside a plain LDAP
//! port. Both record what reached their plain side, which must stay empty.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A CA and a leaf for `names`, made here; returns (CA PEM, TLS acceptor).
fn identity(names: &[&str]) -> (String, native_tls::TlsAcceptor) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
    ca.distinguished_name.push(DnType::CommonName, "forged CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let ca_cert = ca.self_signed(&ca_key).unwrap_or_else(|e| panic!("{e}"));
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let leaf = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .unwrap_or_else(|e| panic!("{e}"));
    let cert = leaf
        .signed_by(&key, &issuer)
        .unwrap_or_else(|e| panic!("{e}"));
    let identity =
        native_tls::Identity::from_pkcs8(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    let acceptor = native_tls::TlsAcceptor::new(identity).unwrap_or_else(|e| panic!("{e}"));
    (ca_cert.pem(), acceptor)
}

/// Accepts on a plain listener until stopped and keeps every byte (and a mark per connection).
fn record(
    plain: std::net::TcpListener,
    stop: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<u8>>>,
) -> std::thread::JoinHandle<()> {
    plain
        .set_nonblocking(true)
        .unwrap_or_else(|e| panic!("{e}"));
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match plain.accept() {
                Ok((mut s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                    let mut buf = [0u8; 4096];
                    let mut got = b"<connection>".to_vec();
                    while let Ok(n @ 1..) = s.read(&mut buf) {
                        got.extend_from_slice(&buf[..n]);
                    }
                    received
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .extend(got);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    })
}

/// Accepts TLS until stopped; `answer` is called on each established stream.
fn serve_tls(
    tls: std::net::TcpListener,
    acceptor: native_tls::TlsAcceptor,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU32>,
    answer: impl Fn(&mut native_tls::TlsStream<std::net::TcpStream>) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    tls.set_nonblocking(true).unwrap_or_else(|e| panic!("{e}"));
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok((s, _)) = tls.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            count.fetch_add(1, Ordering::Relaxed);
            let _ = s.set_nonblocking(false);
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            if let Ok(mut s) = acceptor.accept(s) {
                answer(&mut s);
                let _ = s.shutdown();
            }
        }
    })
}

/// An HTTPS server that answers every request with a 307 to a plain `http://` listener, and
/// that listener, which records every byte it receives: a cloud URL that redirects (a
/// misconfigured front end, or someone in the path) must get nothing from ad-sync.
pub struct Redirector {
    pub url: String,
    pub ca: PathBuf,
    pub plain_port: u16,
    run: Threads,
}

/// A fake server's threads and what reached its plain side; stopped when dropped.
struct Threads {
    received: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Threads {
    fn plain_received(&self) -> Vec<u8> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Redirector {
    pub fn start(dir: &Path) -> Redirector {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
        let (ca_pem, acceptor) = identity(&["127.0.0.1", "localhost"]);
        let ca_path = dir.join("redirector-ca.pem");
        std::fs::write(&ca_path, ca_pem).unwrap_or_else(|e| panic!("{e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(Mutex::new(Vec::new()));
        let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let plain_port = plain.local_addr().map(|a| a.port()).unwrap_or(0);
        let tls = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let tls_port = tls.local_addr().map(|a| a.port()).unwrap_or(0);
        let threads = vec![
            record(plain, stop.clone(), received.clone()),
            serve_tls(
                tls,
                acceptor,
                stop.clone(),
                Arc::new(AtomicU32::new(0)),
                move |s| {
                    // Read the request head (and whatever body came with it), then redirect.
                    let mut buf = [0u8; 8192];
                    let _ = s.read(&mut buf);
                    let answer = format!(
                        "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{plain_port}/v1/keys/check\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = s.write_all(answer.as_bytes());
                },
            ),
        ];
        Redirector {
            url: format!("https://127.0.0.1:{tls_port}"),
            ca: ca_path,
            plain_port,
            run: Threads {
                received,
                stop,
                threads,
            },
        }
    }

    /// What the plain listener received (empty when nothing reached it).
    pub fn plain_received(&self) -> Vec<u8> {
        self.run.plain_received()
    }
}

/// An "LDAPS" server on `ip`:636 with a certificate of its own (as someone in the path would
/// present) and a plain listener on `ip`:389 that records what reaches it.
pub struct FakeDc {
    tls_connections: Arc<AtomicU32>,
    run: Threads,
}

impl FakeDc {
    pub fn start(ip: &str) -> FakeDc {
        let (_, acceptor) = identity(&[ip]);
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicU32::new(0));
        let bind = |port: u16| {
            std::net::TcpListener::bind((ip, port))
                .unwrap_or_else(|e| panic!("listen on {ip}:{port}: {e}"))
        };
        let threads = vec![
            record(bind(389), stop.clone(), received.clone()),
            serve_tls(bind(636), acceptor, stop.clone(), count.clone(), |s| {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
            }),
        ];
        FakeDc {
            tls_connections: count,
            run: Threads {
                received,
                stop,
                threads,
            },
        }
    }

    pub fn plain_received(&self) -> Vec<u8> {
        self.run.plain_received()
    }

    pub fn tls_connections(&self) -> u32 {
        self.tls_connections.load(Ordering::Relaxed)
    }
}
