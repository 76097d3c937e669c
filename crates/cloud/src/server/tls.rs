//! The server's certificate: an operator's PEM files, or a local CA and server certificate made
//! once in a folder (`--self-signed DIR`) and reused on every start, so clients given
//! `DIR/ca.pem` keep trusting the server across restarts.
//!
//! TLS is rustls: TLS 1.3 and 1.2, and for 1.2 only ECDHE suites with AEAD ciphers (AES-GCM,
//! ChaCha20-Poly1305): no CBC, no SHA-1 MACs, no RSA key exchange. (native-tls on Linux set up
//! OpenSSL with Mozilla's old "intermediate" profile: TLS 1.2 only, CBC-SHA1 suites accepted,
//! and no way to choose the suites.) The accept loop is `listener.rs`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, Clone)]
pub enum TlsSource {
    Files { cert: PathBuf, key: PathBuf },
    SelfSigned { dir: PathBuf, names: Vec<String> },
}

/// The TLS configuration to serve with, and the CA file clients should trust (self-signed
/// only).
pub struct ServerIdentity {
    pub config: Arc<rustls::ServerConfig>,
    pub ca_file: Option<PathBuf>,
}

pub fn load(source: &TlsSource) -> Result<ServerIdentity, String> {
    match source {
        TlsSource::Files { cert, key } => {
            let certs = CertificateDer::pem_slice_iter(&read(cert, "--tls-cert")?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    format!("--tls-cert {}: not PEM certificates ({e})", cert.display())
                })?;
            if certs.is_empty() {
                return Err(format!(
                    "--tls-cert {}: no certificate in it; give the server's certificate (then its chain) in PEM",
                    cert.display()
                ));
            }
            let private = PrivateKeyDer::from_pem_slice(&read(key, "--tls-key")?).map_err(|e| {
                format!(
                    "--tls-key {}: no usable private key ({e}); give it in PEM, unencrypted",
                    key.display()
                )
            })?;
            let config = server_config(certs, private).map_err(|e| {
                format!(
                    "--tls-cert {} / --tls-key {}: not a usable certificate and private key ({e}); give PEM files, the key unencrypted and matching the certificate",
                    cert.display(),
                    key.display()
                )
            })?;
            Ok(ServerIdentity {
                config: Arc::new(config),
                ca_file: None,
            })
        }
        TlsSource::SelfSigned { dir, names } => self_signed(dir, names),
    }
}

/// TLS 1.3 and 1.2 with rustls's default suites (AEAD only) on the ring provider, HTTP/1.1.
fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
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

/// Writes through a temporary file created private (0600 from its first byte, not chmodded
/// after), then renamed into place.
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    // A leftover from an interrupted run is replaced (its mode is not trusted).
    let _ = std::fs::remove_file(&tmp);
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        open.mode(0o600);
    }
    let mut f = open
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
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
