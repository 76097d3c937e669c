//! Opening the one connection to a domain controller, step by step, so each step can be
//! reported on its own: name resolution, TCP reachability, TLS (LDAPS or StartTLS) with
//! certificate verification, and the plain-LDAP fallback when, and only when, the answers allow
//! it and the secure way failed.

use super::cert::{self, CertInfo, CertProblem};
use super::session::Session;
use ldap3::{LdapConnAsync, LdapConnSettings, StdStream};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::TcpStream;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    Ldaps,
    Starttls,
}

impl Security {
    pub fn default_port(self) -> u16 {
        match self {
            Security::Ldaps => 636,
            Security::Starttls => 389,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Security::Ldaps => "LDAPS",
            Security::Starttls => "StartTLS",
        }
    }
}

pub const PLAIN_LDAP_PORT: u16 = 389;

#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub host: String,
    pub security: Security,
    pub port: Option<u16>,
    pub ca_file: Option<PathBuf>,
    pub allow_insecure_fallback: bool,
    pub connect_timeout: Duration,
    pub op_timeout: Duration,
}

impl ConnectOptions {
    pub fn secure_port(&self) -> u16 {
        self.port.unwrap_or(self.security.default_port())
    }
}

#[derive(Debug, Clone)]
pub enum ReachError {
    Refused,
    TimedOut(Duration),
    Other(String),
}

impl std::fmt::Display for ReachError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReachError::Refused => {
                f.write_str("the connection was refused (nothing listens there)")
            }
            ReachError::TimedOut(d) => write!(f, "no answer within {} s", d.as_secs_f32()),
            ReachError::Other(e) => f.write_str(e),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TlsFailure {
    /// The TLS library's or server's own words.
    pub message: String,
    /// The certificate the server presented, read over a second, non-verifying handshake.
    pub cert: Option<CertInfo>,
    pub problem: Option<CertProblem>,
    /// The CA file given in the answers could not be used.
    pub ca_file_error: Option<String>,
    /// The server refused the StartTLS request itself.
    pub starttls_refused: bool,
    pub timed_out: bool,
}

/// What happened after the configured secure connection failed. The fallback is StartTLS on
/// the plain LDAP port, with the certificate verified exactly as for LDAPS: ad-sync never binds
/// over an unencrypted connection (a simple bind would send the password as it is, and the
/// SASL mechanisms ldap3 offers cannot seal the connection), so nothing is ever sent in clear.
#[derive(Debug, Clone)]
pub enum Fallback {
    /// The secure connection worked.
    NotNeeded,
    /// The secure connection failed and the answers do not allow the fallback.
    NotAllowed,
    /// StartTLS on this port (the plain LDAP port) is in use: encrypted and verified.
    Used { port: u16 },
    /// The fallback was allowed and tried, and failed too (nothing was bound).
    Failed { port: u16, reason: String },
    /// The fallback is allowed, but the secure port did answer and TLS then failed (a
    /// certificate, a handshake, a timeout): nothing else is tried after that, since an
    /// attacker in the path can cause exactly such a failure.
    NotAfterTlsFailure,
}

/// Everything that happened while connecting, for the checks to report, and the session when
/// one could be opened.
pub struct Connection {
    pub host: String,
    pub secure_port: u16,
    pub security: Security,
    pub resolved: Result<Vec<SocketAddr>, String>,
    pub secure_reach: Option<Result<SocketAddr, ReachError>>,
    pub tls: Option<Result<(), TlsFailure>>,
    pub fallback: Fallback,
    pub session: Option<Session>,
    /// TCP connections opened, the diagnostic certificate read included.
    pub connections_opened: u32,
    /// The `ca_file` trusted besides the system's roots, as read: "C:\ca.cer (DER, 1
    /// certificate)".
    pub ca_file: Option<String>,
}

pub async fn connect(opts: &ConnectOptions) -> Connection {
    let secure_port = opts.secure_port();
    let mut out = Connection {
        host: opts.host.clone(),
        secure_port,
        security: opts.security,
        resolved: Err(String::new()),
        secure_reach: None,
        tls: None,
        fallback: Fallback::NotNeeded,
        session: None,
        connections_opened: 0,
        ca_file: None,
    };
    out.resolved = resolve(&opts.host, secure_port, opts.connect_timeout).await;
    let Ok(addrs) = out.resolved.clone() else {
        return out;
    };

    let secure = reach(&addrs, opts.connect_timeout).await;
    out.secure_reach = Some(secure.as_ref().map(|(a, _)| *a).map_err(Clone::clone));
    if let Ok((addr, tcp)) = secure {
        out.connections_opened += 1;
        let tls = open_secure(opts, addr, tcp).await;
        match tls {
            Ok((session, ca_file)) => {
                out.ca_file = ca_file;
                out.tls = Some(Ok(()));
                out.session = Some(session);
                return out;
            }
            Err(failure) => {
                if failure.cert.is_some() {
                    out.connections_opened += 1;
                }
                out.tls = Some(Err(failure));
            }
        }
    }

    if !opts.allow_insecure_fallback {
        out.fallback = Fallback::NotAllowed;
        return out;
    }
    // Only a secure port that refuses the connection outright (a DC without LDAPS) lets plain
    // LDAP be tried: never a certificate or handshake failure, and never a port that did not
    // answer (a dropped SYN is as easy to cause as a forged certificate).
    if !matches!(out.secure_reach, Some(Err(ReachError::Refused))) {
        out.fallback = Fallback::NotAfterTlsFailure;
        return out;
    }
    // StartTLS on the plain port, verified as LDAPS is; when that is what failed already
    // there is nothing encrypted left to try.
    if opts.security == Security::Starttls && secure_port == PLAIN_LDAP_PORT {
        out.fallback = Fallback::Failed {
            port: PLAIN_LDAP_PORT,
            reason:
                "StartTLS on this port is what failed, and ad-sync never logs on over plain LDAP"
                    .into(),
        };
        return out;
    }
    let plain_addrs: Vec<SocketAddr> = addrs
        .iter()
        .map(|a| SocketAddr::new(a.ip(), PLAIN_LDAP_PORT))
        .collect();
    out.fallback = match reach(&plain_addrs, opts.connect_timeout).await {
        Err(e) => Fallback::Failed {
            port: PLAIN_LDAP_PORT,
            reason: e.to_string(),
        },
        Ok((_, tcp)) => {
            out.connections_opened += 1;
            match tls_connector(opts) {
                Err(e) => Fallback::Failed {
                    port: PLAIN_LDAP_PORT,
                    reason: e,
                },
                Ok((connector, ca_file)) => {
                    match open_ldap(opts, tcp, Mode::StartTls, PLAIN_LDAP_PORT, Some(connector))
                        .await
                    {
                        Ok(session) => {
                            out.ca_file = ca_file;
                            out.session = Some(session);
                            Fallback::Used {
                                port: PLAIN_LDAP_PORT,
                            }
                        }
                        Err(e) => Fallback::Failed {
                            port: PLAIN_LDAP_PORT,
                            reason: format!(
                                "StartTLS: {}; ad-sync never logs on over plain LDAP",
                                e.into_message()
                            ),
                        },
                    }
                }
            }
        }
    };
    out
}

async fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, String> {
    match tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await {
        Err(_) => Err(format!(
            "the name lookup took longer than {} s",
            timeout.as_secs_f32()
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(addrs)) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                Err("the name has no address".into())
            } else {
                Ok(addrs)
            }
        }
    }
}

/// Tries each address in turn; the first that accepts a TCP connection wins.
async fn reach(
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<(SocketAddr, TcpStream), ReachError> {
    let mut last = ReachError::Other("no address to try".into());
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => return Ok((*addr, tcp)),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = ReachError::Refused
            }
            Ok(Err(e)) => last = ReachError::Other(e.to_string()),
            Err(_) => last = ReachError::TimedOut(timeout),
        }
    }
    Err(last)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Ldaps,
    StartTls,
}

/// The session, and what the `ca_file` held when one is set.
async fn open_secure(
    opts: &ConnectOptions,
    addr: SocketAddr,
    tcp: TcpStream,
) -> Result<(Session, Option<String>), TlsFailure> {
    let mut failure = TlsFailure {
        message: String::new(),
        cert: None,
        problem: None,
        ca_file_error: None,
        starttls_refused: false,
        timed_out: false,
    };
    let (connector, ca_file) = match tls_connector(opts) {
        Ok(c) => c,
        Err(e) => {
            failure.message = e.clone();
            failure.ca_file_error = Some(e);
            return Err(failure);
        }
    };
    let mode = match opts.security {
        Security::Ldaps => Mode::Ldaps,
        Security::Starttls => Mode::StartTls,
    };
    match open_ldap(opts, tcp, mode, opts.secure_port(), Some(connector)).await {
        Ok(session) => Ok((session, ca_file)),
        Err(e) => {
            failure.timed_out = matches!(e, OpenError::TimedOut(_));
            failure.starttls_refused = matches!(e, OpenError::StartTlsRefused(_));
            failure.message = e.into_message();
            if !failure.starttls_refused && !failure.timed_out {
                failure.cert = cert::fetch_certificate(
                    addr,
                    &opts.host,
                    mode == Mode::StartTls,
                    opts.op_timeout,
                )
                .await;
                failure.problem = cert::diagnose_failure(
                    failure.cert.as_ref(),
                    &opts.host,
                    crate::time_fmt::now_unix(),
                    &failure.message,
                );
            }
            Err(failure)
        }
    }
}

/// What a TLS connector was built from: the `ca_file` as it was on disk (its path, length and
/// modification time), so a replaced file is read again.
type ConnectorKey = Option<(std::path::PathBuf, u64, Option<std::time::SystemTime>)>;

fn connector_key(opts: &ConnectOptions) -> ConnectorKey {
    opts.ca_file.as_ref().map(|p| {
        let meta = std::fs::metadata(p).ok();
        (
            p.clone(),
            meta.as_ref().map_or(0, std::fs::Metadata::len),
            meta.and_then(|m| m.modified().ok()),
        )
    })
}

/// The last connector built, by what it was built from. Building one reads the system's trust
/// store (OpenSSL parses its whole bundle: 60 to 70 ms measured on these machines), which the
/// service would otherwise pay at every cycle's connection; a connector holds only trust
/// anchors, never a session or a secret, and connections made with it verify as a new one's.
static CONNECTOR: std::sync::Mutex<
    Option<(ConnectorKey, native_tls::TlsConnector, Option<String>)>,
> = std::sync::Mutex::new(None);

/// The TLS connector for `opts` (the system's roots and the `ca_file`), built once for as long
/// as the `ca_file` stays as it is.
fn tls_connector(
    opts: &ConnectOptions,
) -> Result<(native_tls::TlsConnector, Option<String>), String> {
    let key = connector_key(opts);
    let mut cached = CONNECTOR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((k, c, read)) = cached.as_ref()
        && *k == key
    {
        return Ok((c.clone(), read.clone()));
    }
    let (c, read) = build_connector(opts)?;
    *cached = Some((key, c.clone(), read.clone()));
    Ok((c, read))
}

/// The connector, trusting `ca_file`'s certificates besides the system's roots, and what the
/// file held.
fn build_connector(
    opts: &ConnectOptions,
) -> Result<(native_tls::TlsConnector, Option<String>), String> {
    let mut builder = native_tls::TlsConnector::builder();
    let mut read = None;
    if let Some(path) = &opts.ca_file {
        let ca = cert::load_ca_file(path).map_err(|e| e.to_string())?;
        for der in &ca.certs {
            let c = native_tls::Certificate::from_der(der)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            builder.add_root_certificate(c);
        }
        read = Some(format!("{} ({})", path.display(), ca.describe()));
    }
    let connector = builder
        .build()
        .map_err(|e| format!("the TLS library could not be set up: {e}"))?;
    Ok((connector, read))
}

/// Why `open_ldap` failed, decided from ldap3's error type rather than its wording.
enum OpenError {
    TimedOut(String),
    /// The server answered the StartTLS request with an error result.
    StartTlsRefused(String),
    Other(String),
}

impl OpenError {
    fn into_message(self) -> String {
        match self {
            OpenError::TimedOut(m) | OpenError::StartTlsRefused(m) | OpenError::Other(m) => m,
        }
    }
}

async fn open_ldap(
    opts: &ConnectOptions,
    tcp: TcpStream,
    mode: Mode,
    port: u16,
    connector: Option<native_tls::TlsConnector>,
) -> Result<Session, OpenError> {
    let std_stream = tcp
        .into_std()
        .map_err(|e| OpenError::Other(e.to_string()))?;
    let mut settings = LdapConnSettings::new()
        .set_conn_timeout(opts.connect_timeout)
        .set_std_stream(StdStream::Tcp(std_stream))
        .set_starttls(mode == Mode::StartTls);
    if let Some(c) = connector {
        settings = settings.set_connector(c);
    }
    let scheme = if mode == Mode::Ldaps { "ldaps" } else { "ldap" };
    let host = if opts.host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{}]", opts.host)
    } else {
        opts.host.clone()
    };
    let url = format!("{scheme}://{host}:{port}");
    let (conn, ldap) = match tokio::time::timeout(
        opts.op_timeout,
        LdapConnAsync::with_settings(settings, &url),
    )
    .await
    {
        // Ours or ldap3's own connect timeout: the same thing to the admin.
        Err(_) | Ok(Err(ldap3::LdapError::Timeout { .. })) => {
            let step = match mode {
                Mode::Ldaps => "the LDAPS handshake",
                Mode::StartTls => "the StartTLS exchange",
            };
            return Err(OpenError::TimedOut(format!(
                "no answer to {step} within {} s",
                opts.op_timeout.as_secs_f32()
            )));
        }
        Ok(Err(e @ ldap3::LdapError::LdapResult { .. })) if mode == Mode::StartTls => {
            return Err(OpenError::StartTlsRefused(e.to_string()));
        }
        Ok(Err(e)) => return Err(OpenError::Other(e.to_string())),
        Ok(Ok(pair)) => pair,
    };
    tokio::spawn(async move {
        if let Err(e) = conn.drive().await {
            tracing::debug!("LDAP connection ended: {e}");
        }
    });
    // Every session is TLS (LDAPS, or StartTLS done by ldap3 before it answers): there is no
    // plain mode to open.
    Ok(Session::new(ldap, opts.op_timeout, true))
}

#[cfg(test)]
mod connector {
    use super::*;

    /// The connector is built once for a `ca_file` and built again when the file is replaced:
    /// a CA the administrator renews is read at the next connection, and one that became
    /// unreadable is refused then, never answered from the old one.
    #[test]
    fn a_replaced_ca_file_is_read_again() {
        let dir = std::env::temp_dir().join(format!("ad-sync-connector-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let ca = dir.join("ca.pem");
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let mut p =
            rcgen::CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "Test Root");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&ca, cert.pem()).unwrap_or_else(|e| panic!("{e}"));
        let opts = ConnectOptions {
            host: "dc1.example.com".into(),
            security: Security::Ldaps,
            port: None,
            ca_file: Some(ca.clone()),
            allow_insecure_fallback: false,
            connect_timeout: Duration::from_secs(5),
            op_timeout: Duration::from_secs(5),
        };
        let first = connector_key(&opts);
        let (_, read) = tls_connector(&opts).unwrap_or_else(|e| panic!("{e}"));
        assert!(read.is_some_and(|r| r.contains("1 certificate")));
        assert_eq!(connector_key(&opts), first, "the same file, the same key");
        // Replaced by something that is not a certificate: read again, and refused.
        std::fs::write(&ca, "not a certificate at all\n").unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(connector_key(&opts), first);
        assert!(tls_connector(&opts).is_err());
        // No ca_file: the system's roots alone.
        let none = ConnectOptions {
            ca_file: None,
            ..opts
        };
        assert_eq!(connector_key(&none), None);
        assert!(tls_connector(&none).is_ok_and(|(_, read)| read.is_none()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
