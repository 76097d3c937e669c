//! A forward proxy on loopback, as a corporate one behaves for HTTPS: `CONNECT host:port`,
//! Basic authentication (`407` without the right login), and only the hosts it is told to
//! reach, which it resolves itself: the tests give the cloud a name that does not resolve
//! anywhere else (`.invalid`), so nothing can reach the cloud but through this proxy. It sees
//! only the tunnel: TLS runs end to end between the client and the cloud.
//!
//! Small and on std threads on purpose: a test must see exactly which requests came, and a
//! proxy package would need a config file and a port of its own per test.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct ConnectProxy {
    pub port: u16,
    /// The `user:password` it asks for.
    login: String,
    state: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Tunnels opened (authenticated CONNECTs to a known host).
    tunnels: AtomicU64,
    /// Requests refused with 407.
    refused_login: AtomicU64,
    /// Every request line seen.
    lines: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl ConnectProxy {
    /// A proxy that takes `host:port` CONNECTs for the names in `routes` to their addresses,
    /// after a Basic login `user` / `password`.
    pub fn start(user: &str, password: &str, routes: &[(&str, SocketAddr)]) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("proxy: {e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let state = Arc::new(Shared::default());
        let login = format!("{user}:{password}");
        let routes: HashMap<String, SocketAddr> = routes
            .iter()
            .map(|(h, a)| (h.to_ascii_lowercase(), *a))
            .collect();
        let (s, want) = (state.clone(), login.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (s, want, routes) = (s.clone(), want.clone(), routes.clone());
                std::thread::spawn(move || serve(conn, &s, &want, &routes));
            }
        });
        ConnectProxy { port, login, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn tunnels(&self) -> u64 {
        self.state.tunnels.load(Ordering::SeqCst)
    }

    pub fn refused_logins(&self) -> u64 {
        self.state.refused_login.load(Ordering::SeqCst)
    }

    pub fn request_lines(&self) -> Vec<String> {
        self.state
            .lines
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    pub fn login(&self) -> &str {
        &self.login
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(conn: TcpStream, s: &Shared, want: &str, routes: &HashMap<String, SocketAddr>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(reader_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reader_half);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let line = line.trim_end().to_string();
    if let Ok(mut l) = s.lines.lock() {
        l.push(line.clone());
    }
    let mut auth = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':')
            && name.eq_ignore_ascii_case("proxy-authorization")
        {
            auth = value
                .trim()
                .strip_prefix("Basic ")
                .and_then(|b| {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD.decode(b).ok()
                })
                .and_then(|b| String::from_utf8(b).ok());
        }
    }
    let mut out = conn;
    let mut parts = line.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
        let _ = out.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    if auth.as_deref() != Some(want) {
        s.refused_login.fetch_add(1, Ordering::SeqCst);
        let _ = out.write_all(
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    }
    let upstream = target
        .rsplit_once(':')
        .and_then(|(host, port)| {
            routes
                .get(&host.to_ascii_lowercase())
                .filter(|a| a.port().to_string() == port)
        })
        .and_then(|a| TcpStream::connect_timeout(a, Duration::from_secs(5)).ok());
    let Some(up) = upstream else {
        let _ = out.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    if out
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .is_err()
    {
        return;
    }
    s.tunnels.fetch_add(1, Ordering::SeqCst);
    let _ = out.set_read_timeout(None);
    // Bytes the client sent after the request (its TLS hello, when it did not wait) first.
    let early = reader.buffer().to_vec();
    let (Ok(mut up_w), Ok(mut up_r), Ok(mut down_w)) =
        (up.try_clone(), up.try_clone(), out.try_clone())
    else {
        return;
    };
    if !early.is_empty() && up_w.write_all(&early).is_err() {
        return;
    }
    let mut client_r = reader.into_inner();
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_r, &mut up_w);
        let _ = up_w.shutdown(std::net::Shutdown::Write);
    });
    let mut buf = [0u8; 16 * 1024];
    loop {
        match up_r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if down_w.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = down_w.shutdown(std::net::Shutdown::Write);
    let _ = t.join();
}
