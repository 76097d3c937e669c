//! The server's certificate: an operator's PEM files, or a local CA and server certificate made
//! once in a folder (`--self-signed DIR`) and reused on every start, so clients given
//! `DIR/ca.pem` keep trusting the server across restarts.
//!
//! Also the TLS listener axum serves on: handshakes run in their own tasks with a timeout, so a
//! client that connects and says nothing holds up no one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_native_tls::TlsStream;

#[derive(Debug, Clone)]
pub enum TlsSource {
    Files { cert: PathBuf, key: PathBuf },
    SelfSigned { dir: PathBuf, names: Vec<String> },
}

/// The identity to serve with, and the CA file clients should trust (self-signed only).
pub struct ServerIdentity {
    pub identity: native_tls::Identity,
    pub ca_file: Option<PathBuf>,
}

pub fn load(source: &TlsSource) -> Result<ServerIdentity, String> {
    match source {
        TlsSource::Files { cert, key } => {
            let cert_pem = read(cert, "--tls-cert")?;
            let key_pem = read(key, "--tls-key")?;
            let identity = native_tls::Identity::from_pkcs8(&cert_pem, &key_pem).map_err(|e| {
                format!(
                    "--tls-cert {} / --tls-key {}: not a usable certificate and private key ({e}); give PEM files, the key unencrypted",
                    cert.display(),
                    key.display()
                )
            })?;
            Ok(ServerIdentity {
                identity,
                ca_file: None,
            })
        }
        TlsSource::SelfSigned { dir, names } => self_signed(dir, names),
    }
}

fn read(path: &Path, flag: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{flag} {}: cannot read it: {e}", path.display()))
}

fn self_signed(dir: &Path, names: &[String]) -> Result<ServerIdentity, String> {
    std::fs::create_dir_all(dir).map_err(|e| {
        format!(
            "--self-signed {}: cannot create the folder: {e}",
            dir.display()
        )
    })?;
    let ca = dir.join("ca.pem");
    let cert = dir.join("server.pem");
    let key = dir.join("server.key");
    if !(ca.is_file() && cert.is_file() && key.is_file()) {
        generate(dir, names).map_err(|e| {
            format!(
                "--self-signed {}: could not make the certificates: {e}",
                dir.display()
            )
        })?;
    }
    let mut ident = load(&TlsSource::Files { cert, key })?;
    ident.ca_file = Some(ca);
    Ok(ident)
}

fn generate(dir: &Path, names: &[String]) -> Result<(), String> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let e = |e: rcgen::Error| e.to_string();
    let ca_key = KeyPair::generate().map_err(e)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca.distinguished_name
        .push(DnType::CommonName, "ad-sync-cloud local CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = time::OffsetDateTime::now_utc();
    ca.not_before = now - time::Duration::days(1);
    ca.not_after = now + time::Duration::days(3650);
    let ca_cert = ca.self_signed(&ca_key).map_err(e)?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().map_err(e)?;
    let mut leaf = CertificateParams::new(names.to_vec()).map_err(e)?;
    leaf.distinguished_name.push(
        DnType::CommonName,
        names.first().map_or("localhost", String::as_str),
    );
    leaf.not_before = now - time::Duration::days(1);
    leaf.not_after = now + time::Duration::days(825);
    let cert = leaf.signed_by(&key, &issuer).map_err(e)?;

    write_private(&dir.join("ca.pem"), &ca_cert.pem())?;
    write_private(&dir.join("server.pem"), &cert.pem())?;
    write_private(&dir.join("server.key"), &key.serialize_pem())?;
    // The CA's key is not kept: nothing else should be signed by it.
    Ok(())
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The names a self-signed certificate covers: loopback, this host's name, the listen address
/// when it is a specific one, and any the operator adds.
pub fn default_names(listen: &SocketAddr, extra: &[String]) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    if let Ok(host) = gethostname::gethostname().into_string() {
        names.push(host);
    }
    if !listen.ip().is_unspecified() {
        names.push(listen.ip().to_string());
    }
    names.extend(extra.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.to_lowercase()));
    names
}

/// Where a request came from (the TCP peer).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

pub struct TlsListener {
    incoming: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl TlsListener {
    pub fn new(tcp: TcpListener, identity: native_tls::Identity) -> Result<Self, String> {
        let local = tcp.local_addr().map_err(|e| e.to_string())?;
        let acceptor = native_tls::TlsAcceptor::new(identity)
            .map_err(|e| format!("the TLS certificate cannot be used: {e}"))?;
        let acceptor = tokio_native_tls::TlsAcceptor::from(acceptor);
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        // Out of descriptors and the like: wait rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Only latency: a socket that refuses it still works.
                let _ = stream.set_nodelay(true);
                if tx.is_closed() {
                    break;
                }
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            // The server is shutting down: the connection is dropped.
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            incoming: rx,
            local,
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(conn) => conn,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}
