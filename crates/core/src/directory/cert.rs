//! What a person needs to decide about a server certificate: subject, issuer, names, validity
//! and SHA-256 fingerprint; plus loading a CA file and fetching a certificate that failed
//! verification so it can be shown.
//!
//! Verification itself is the TLS library's (native-tls: OpenSSL here, SChannel on Windows). The
//! diagnosis here only explains a failure the library already reported.

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use x509_parser::oid_registry::OID_PKIX_ACCESS_DESCRIPTOR_OCSP;
use x509_parser::prelude::{
    DistributionPointName, FromDer, GeneralName, ParsedExtension, X509Certificate,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub dns_names: Vec<String>,
    pub not_before: String,
    pub not_after: String,
    #[serde(skip)]
    pub not_before_unix: i64,
    #[serde(skip)]
    pub not_after_unix: i64,
    pub sha256: String,
    pub self_signed: bool,
    /// Where revocation can be checked: the CRL distribution points and OCSP servers the
    /// certificate names (`CRL http://...`, `OCSP http://...`); empty when it names none, as
    /// self-made DC certificates usually do.
    pub revocation: Vec<String>,
}

/// Why a certificate a TLS library refused was refused, in the terms an admin can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertProblem {
    Expired,
    NotYetValid,
    NameMismatch,
    Untrusted,
    /// The chain was built, but whether the certificate was revoked could not be found out
    /// (no CRL distribution point, or one that could not be reached).
    RevocationUnknown,
    Revoked,
    /// The certificate names the host as an IP address, and the TLS library refused the match:
    /// SChannel matches only DNS names in some Windows versions (and in Wine).
    IpAddressNotMatched,
}

/// What the TLS library itself said about a certificate it refused, when its words carry a
/// verdict: SChannel's HRESULT (Rust prints a Windows error as `... (os error -2146762482)`),
/// or OpenSSL's verify reason. The certificate's own fields cannot tell a revocation failure
/// from an untrusted CA, so the library's verdict comes first.
pub fn library_verdict(message: &str) -> Option<CertProblem> {
    if let Some(code) = windows_error_code(message) {
        return match code {
            // CERT_E_EXPIRED, SEC_E_CERT_EXPIRED (both also mean "not yet valid").
            0x800B_0101 | 0x8009_0328 => Some(CertProblem::Expired),
            // CERT_E_UNTRUSTEDROOT, CERT_E_CHAINING, SEC_E_UNTRUSTED_ROOT.
            0x800B_0109 | 0x800B_010A | 0x8009_0325 => Some(CertProblem::Untrusted),
            // CERT_E_CN_NO_MATCH, SEC_E_WRONG_PRINCIPAL.
            0x800B_010F | 0x8009_0322 => Some(CertProblem::NameMismatch),
            // CERT_E_REVOKED, CRYPT_E_REVOKED.
            0x800B_010C | 0x8009_2010 => Some(CertProblem::Revoked),
            // CERT_E_REVOCATION_FAILURE, CRYPT_E_NO_REVOCATION_CHECK, CRYPT_E_REVOCATION_OFFLINE.
            0x800B_010E | 0x8009_2012 | 0x8009_2013 => Some(CertProblem::RevocationUnknown),
            _ => None,
        };
    }
    let lower = message.to_ascii_lowercase();
    let has = |s: &str| lower.contains(s);
    if has("certificate has expired") {
        Some(CertProblem::Expired)
    } else if has("certificate is not yet valid") {
        Some(CertProblem::NotYetValid)
    } else if has("hostname mismatch") || has("ip address mismatch") {
        Some(CertProblem::NameMismatch)
    } else if has("certificate revoked") {
        Some(CertProblem::Revoked)
    } else if has("unable to get certificate crl") || has("crl has expired") {
        Some(CertProblem::RevocationUnknown)
    } else if has("unable to get local issuer certificate")
        || has("self-signed certificate")
        || has("self signed certificate")
    {
        Some(CertProblem::Untrusted)
    } else {
        None
    }
}

/// The HRESULT in a Windows error as Rust's `io::Error` prints it: `(os error -2146762482)`
/// on Windows, `OS Error -2146762482 (FormatMessageW() returned error 317)` where the system
/// has no text for the code.
fn windows_error_code(message: &str) -> Option<u32> {
    let lower = message.to_ascii_lowercase();
    let at = lower.find("os error ")? + "os error ".len();
    let rest = &lower[at..];
    let end = rest
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_digit() || (*i == 0 && *c == '-')))
        .map_or(rest.len(), |(i, _)| i);
    let n: i64 = rest[..end].parse().ok()?;
    // HRESULTs are printed as negative i32s; positive Win32 codes are not trust verdicts.
    if n < 0 { Some(n as i32 as u32) } else { None }
}

/// Why a certificate was refused: the library's verdict when it gave one, else what the
/// certificate's own fields show.
pub fn diagnose_failure(
    cert: Option<&CertInfo>,
    host: &str,
    now_unix: i64,
    library_message: &str,
) -> Option<CertProblem> {
    let from_cert = cert.map(|c| c.diagnose(host, now_unix));
    match library_verdict(library_message) {
        // SChannel's one code for both ends of the validity period.
        Some(CertProblem::Expired) if from_cert == Some(CertProblem::NotYetValid) => from_cert,
        // The library says the name does not match, yet the certificate carries the address:
        // it matched DNS names only.
        Some(CertProblem::NameMismatch)
            if host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok()
                && cert.is_some_and(|c| c.matches_host(host)) =>
        {
            Some(CertProblem::IpAddressNotMatched)
        }
        Some(v) => Some(v),
        None => from_cert,
    }
}

impl CertInfo {
    pub fn from_der(der: &[u8]) -> Option<CertInfo> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let dns_names = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_string()),
                    // HTTPS servers are often reached by address (the reference cloud on
                    // loopback); an IP SAN is a name too.
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => <[u8; 4]>::try_from(*b)
                            .ok()
                            .map(|a| std::net::Ipv4Addr::from(a).to_string()),
                        16 => <[u8; 16]>::try_from(*b)
                            .ok()
                            .map(|a| std::net::Ipv6Addr::from(a).to_string()),
                        _ => None,
                    },
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let mut revocation = Vec::new();
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::CRLDistributionPoints(points) => {
                    for p in points.iter() {
                        if let Some(DistributionPointName::FullName(names)) = &p.distribution_point
                        {
                            revocation.extend(names.iter().filter_map(|n| match n {
                                GeneralName::URI(u) => Some(format!("CRL {u}")),
                                _ => None,
                            }));
                        }
                    }
                }
                ParsedExtension::AuthorityInfoAccess(aia) => {
                    revocation.extend(aia.iter().filter_map(|d| {
                        match (
                            &d.access_location,
                            d.access_method == OID_PKIX_ACCESS_DESCRIPTOR_OCSP,
                        ) {
                            (GeneralName::URI(u), true) => Some(format!("OCSP {u}")),
                            _ => None,
                        }
                    }));
                }
                _ => {}
            }
        }
        let validity = cert.validity();
        let fingerprint = Sha256::digest(der)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        Some(CertInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            dns_names,
            not_before: crate::time_fmt::unix_to_text(validity.not_before.timestamp()),
            not_after: crate::time_fmt::unix_to_text(validity.not_after.timestamp()),
            not_before_unix: validity.not_before.timestamp(),
            not_after_unix: validity.not_after.timestamp(),
            sha256: fingerprint,
            self_signed: cert.subject() == cert.issuer(),
            revocation,
        })
    }

    /// The names the certificate is valid for: its DNS SANs, or its subject CN when it has none
    /// (as Samba's and older Windows DCs' self-made certificates do).
    pub fn names(&self) -> Vec<String> {
        if !self.dns_names.is_empty() {
            return self.dns_names.clone();
        }
        self.subject
            .split(", ")
            .filter_map(|part| part.strip_prefix("CN="))
            .map(str::to_string)
            .collect()
    }

    pub fn matches_host(&self, host: &str) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        self.names().iter().any(|name| {
            let name = name.to_ascii_lowercase();
            match name.strip_prefix("*.") {
                Some(rest) => host
                    .split_once('.')
                    .is_some_and(|(first, tail)| !first.is_empty() && tail == rest),
                None => name == host,
            }
        })
    }

    pub fn diagnose(&self, host: &str, now_unix: i64) -> CertProblem {
        if now_unix > self.not_after_unix {
            CertProblem::Expired
        } else if now_unix < self.not_before_unix {
            CertProblem::NotYetValid
        } else if !self.matches_host(host) {
            CertProblem::NameMismatch
        } else {
            CertProblem::Untrusted
        }
    }

    /// Whether and where revocation can be checked, in one line.
    pub fn revocation_line(&self) -> String {
        if self.revocation.is_empty() {
            "none named (no CRL distribution point or OCSP server in the certificate; Windows and OpenSSL accept it without a revocation check)".into()
        } else {
            self.revocation.join(", ")
        }
    }

    /// Several lines, one fact per line, for a detail field.
    pub fn describe(&self) -> String {
        let names = self.names();
        format!(
            "subject: {}\nissuer: {}{}\nnames: {}\nvalid: {} to {}\nrevocation: {}\nSHA-256: {}",
            self.subject,
            self.issuer,
            if self.self_signed {
                " (self-signed)"
            } else {
                ""
            },
            if names.is_empty() {
                "(none)".to_string()
            } else {
                names.join(", ")
            },
            self.not_before,
            self.not_after,
            self.revocation_line(),
            self.sha256
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path} holds no certificate: expected the CA's certificate as PEM (-----BEGIN CERTIFICATE-----), DER (a .cer or .crt file as Windows exports it) or a PKCS#7 bundle (.p7b)"
    )]
    Empty { path: String },
    #[error("{path}: {what} is not valid: {reason}")]
    Invalid {
        path: String,
        /// Which part: "certificate 2", "PEM block 1", "the file".
        what: String,
        reason: String,
    },
}

/// How a CA file is written. Windows' certificate export writes DER (`.cer`, `.crt`) or
/// Base-64 (PEM, often named `.cer` too) and PKCS#7 bundles (`.p7b`, DER or PEM); AD CS hands
/// out the same. The content decides, never the file's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaFormat {
    Pem,
    Der,
    Pkcs7Der,
    Pkcs7Pem,
}

impl CaFormat {
    pub fn words(self) -> &'static str {
        match self {
            CaFormat::Pem => "PEM",
            CaFormat::Der => "DER",
            CaFormat::Pkcs7Der => "a PKCS#7 bundle (DER)",
            CaFormat::Pkcs7Pem => "a PKCS#7 bundle (PEM)",
        }
    }
}

/// The certificates of a CA file, as DER, and how the file was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFile {
    pub format: CaFormat,
    pub certs: Vec<Vec<u8>>,
}

impl CaFile {
    /// "DER, 1 certificate", for the checks' words.
    pub fn describe(&self) -> String {
        let n = self.certs.len();
        format!(
            "{}, {n} certificate{}",
            self.format.words(),
            if n == 1 { "" } else { "s" }
        )
    }

    /// The certificates as PEM, whatever the file was: what the install keeps beside the
    /// config, so that the copy named `dc-ca.pem` is PEM.
    pub fn to_pem(&self) -> String {
        self.certs
            .iter()
            .map(|der| pem_block("CERTIFICATE", der))
            .collect()
    }
}

/// One PEM block: base64 in lines of 64, as RFC 7468 writes it.
pub fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Reads every certificate in a CA file (PEM, DER or PKCS#7), as DER.
pub fn load_ca_file(path: &Path) -> Result<CaFile, CaFileError> {
    let shown = path.display().to_string();
    let data = std::fs::read(path).map_err(|source| CaFileError::Read {
        path: shown.clone(),
        source,
    })?;
    parse_ca(&data).map_err(|e| match e {
        CaParseError::Empty => CaFileError::Empty { path: shown },
        CaParseError::Invalid { what, reason } => CaFileError::Invalid {
            path: shown,
            what,
            reason,
        },
    })
}

/// Why a CA file's bytes are not usable (the path is added by `load_ca_file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaParseError {
    Empty,
    Invalid { what: String, reason: String },
}

/// The certificates in a CA file's bytes, whichever way it is written.
pub fn parse_ca(data: &[u8]) -> Result<CaFile, CaParseError> {
    // PEM may have text around its blocks (`openssl x509 -text`, a bundle's subject lines).
    let pem_text = data.windows(11).any(|w| w == b"-----BEGIN ");
    let (format, certs) = if pem_text {
        let mut certs = Vec::new();
        let mut bundle = false;
        for (i, pem) in x509_parser::pem::Pem::iter_from_buffer(data).enumerate() {
            let pem = pem.map_err(|e| CaParseError::Invalid {
                what: format!("PEM block {}", i + 1),
                reason: e.to_string(),
            })?;
            match pem.label.as_str() {
                "CERTIFICATE" => certs.push(pem.contents),
                "PKCS7" | "CMS" => {
                    bundle = true;
                    certs.extend(pkcs7_certificates(&pem.contents)?);
                }
                _ => {}
            }
        }
        let format = if bundle {
            CaFormat::Pkcs7Pem
        } else {
            CaFormat::Pem
        };
        (format, certs)
    } else if data.is_empty() {
        return Err(CaParseError::Empty);
    } else if X509Certificate::from_der(data).is_ok_and(|(rest, _)| rest.is_empty()) {
        (CaFormat::Der, vec![data.to_vec()])
    } else {
        (CaFormat::Pkcs7Der, pkcs7_certificates(data)?)
    };
    if certs.is_empty() {
        return Err(CaParseError::Empty);
    }
    for (i, der) in certs.iter().enumerate() {
        if let Err(e) = X509Certificate::from_der(der) {
            return Err(CaParseError::Invalid {
                what: format!("certificate {}", i + 1),
                reason: format!("not an X.509 certificate ({e})"),
            });
        }
    }
    Ok(CaFile { format, certs })
}

/// The certificates of a PKCS#7 (CMS SignedData, RFC 5652) bundle, as DER.
fn pkcs7_certificates(der_bytes: &[u8]) -> Result<Vec<Vec<u8>>, CaParseError> {
    use der::{Decode, Encode};
    const SIGNED_DATA: der::asn1::ObjectIdentifier =
        der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
    let invalid = |reason: String| CaParseError::Invalid {
        what: "the file".into(),
        reason,
    };
    let info = cms::content_info::ContentInfo::from_der(der_bytes).map_err(|e| {
        invalid(format!(
            "neither a DER certificate nor a PKCS#7 bundle ({e}); export the CA certificate again as DER, Base-64 or .p7b"
        ))
    })?;
    if info.content_type != SIGNED_DATA {
        return Err(invalid(format!(
            "a PKCS#7 message of type {} holds no certificates (a .p7b bundle is signed data, {SIGNED_DATA})",
            info.content_type
        )));
    }
    let signed: cms::signed_data::SignedData = info
        .content
        .decode_as()
        .map_err(|e| invalid(format!("its PKCS#7 signed data cannot be read: {e}")))?;
    let mut out = Vec::new();
    for choice in signed
        .certificates
        .map(|set| set.0.into_vec())
        .unwrap_or_default()
    {
        if let cms::cert::CertificateChoices::Certificate(c) = choice {
            out.push(
                c.to_der()
                    .map_err(|e| invalid(format!("a certificate in it cannot be read: {e}")))?,
            );
        }
    }
    Ok(out)
}

/// The BER of an LDAP StartTLS extended request (message id 1), fixed bytes.
const STARTTLS_REQUEST: &[u8] = &[
    0x30, 0x1d, 0x02, 0x01, 0x01, 0x77, 0x18, 0x80, 0x16, b'1', b'.', b'3', b'.', b'6', b'.', b'1',
    b'.', b'4', b'.', b'1', b'.', b'1', b'4', b'6', b'6', b'.', b'2', b'0', b'0', b'3', b'7',
];

/// Opens a second, diagnostic TLS connection that does not verify anything, only to read the
/// certificate the server presents after the real, verifying connection refused it. Nothing is
/// sent over it but the handshake (and the StartTLS request first, when `starttls`).
pub async fn fetch_certificate(
    addr: SocketAddr,
    host: &str,
    starttls: bool,
    timeout: Duration,
) -> Option<CertInfo> {
    let work = async {
        let mut tcp = TcpStream::connect(addr).await.ok()?;
        if starttls {
            tcp.write_all(STARTTLS_REQUEST).await.ok()?;
            read_one_ber_message(&mut tcp).await?;
        }
        let connector = native_tls::TlsConnector::builder()
            .danger_accept_invalid_certs(true)
            .danger_accept_invalid_hostnames(true)
            .build()
            .ok()?;
        let tls = tokio_native_tls::TlsConnector::from(connector)
            .connect(host, tcp)
            .await
            .ok()?;
        let der = tls.get_ref().peer_certificate().ok()??.to_der().ok()?;
        CertInfo::from_der(&der)
    };
    tokio::time::timeout(timeout, work).await.ok().flatten()
}

/// Reads one BER TLV (the StartTLS response) so the TLS handshake starts on a clean stream.
async fn read_one_ber_message(tcp: &mut TcpStream) -> Option<()> {
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).await.ok()?;
    let len = if head[1] & 0x80 == 0 {
        head[1] as usize
    } else {
        let n = (head[1] & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let mut buf = [0u8; 4];
        tcp.read_exact(&mut buf[..n]).await.ok()?;
        buf[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize)
    };
    if len > 64 * 1024 {
        return None;
    }
    let mut body = vec![0u8; len];
    tcp.read_exact(&mut body).await.ok()?;
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two CA certificates made here, as DER.
    fn two_cas() -> Vec<Vec<u8>> {
        ["Corp Root CA", "Corp Issuing CA"]
            .iter()
            .map(|name| {
                let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
                let mut p = rcgen::CertificateParams::new(Vec::<String>::new())
                    .unwrap_or_else(|e| panic!("{e}"));
                p.distinguished_name.push(rcgen::DnType::CommonName, *name);
                p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
                p.self_signed(&key)
                    .unwrap_or_else(|e| panic!("{e}"))
                    .der()
                    .to_vec()
            })
            .collect()
    }

    /// PEM as Windows' "Base-64 encoded X.509" export writes it: CRLF line ends.
    fn pem(label: &str, der: &[u8]) -> String {
        pem_block(label, der).replace('\n', "\r\n")
    }

    /// A certs-only PKCS#7 bundle (what Windows' "Cryptographic Message Syntax Standard -
    /// PKCS #7 Certificates (.P7B)" export writes), as DER.
    fn p7b(ders: &[Vec<u8>]) -> Vec<u8> {
        use der::{Decode, Encode};
        let certs: Vec<cms::cert::x509::Certificate> = ders
            .iter()
            .map(|d| cms::cert::x509::Certificate::from_der(d).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        cms::content_info::ContentInfo::try_from(certs)
            .and_then(|ci| ci.to_der())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_ca_file_is_read_as_windows_and_openssl_write_it() {
        let cas = two_cas();
        let one = std::slice::from_ref(&cas[0]);
        // (what, the file's bytes, read as, the certificates in it)
        type Case<'a> = (&'a str, Vec<u8>, CaFormat, &'a [Vec<u8>]);
        let cases: Vec<Case> = vec![
            (
                "PEM",
                pem("CERTIFICATE", &cas[0]).into_bytes(),
                CaFormat::Pem,
                one,
            ),
            (
                "PEM, two, with text around them",
                format!(
                    "Corp Root CA\n{}\nsubject=Corp Issuing CA\n{}",
                    pem("CERTIFICATE", &cas[0]),
                    pem("CERTIFICATE", &cas[1])
                )
                .into_bytes(),
                CaFormat::Pem,
                &cas,
            ),
            ("DER .cer", cas[0].clone(), CaFormat::Der, one),
            ("PKCS#7 .p7b, DER", p7b(&cas), CaFormat::Pkcs7Der, &cas),
            ("PKCS#7, one", p7b(one), CaFormat::Pkcs7Der, one),
            (
                "PKCS#7, PEM",
                pem("PKCS7", &p7b(&cas)).into_bytes(),
                CaFormat::Pkcs7Pem,
                &cas,
            ),
        ];
        for (name, bytes, format, want) in cases {
            let got = parse_ca(&bytes).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert_eq!(got.format, format, "{name}");
            assert_eq!(got.certs, want, "{name}");
        }
        assert_eq!(
            parse_ca(&p7b(&cas)).map(|c| c.describe()),
            Ok("a PKCS#7 bundle (DER), 2 certificates".to_string())
        );
        assert_eq!(
            parse_ca(&cas[1]).map(|c| c.describe()),
            Ok("DER, 1 certificate".to_string())
        );
        // What the install keeps is PEM, and reads back as the same certificates.
        let bundle = parse_ca(&p7b(&cas)).unwrap_or_else(|e| panic!("{e:?}"));
        let kept = parse_ca(bundle.to_pem().as_bytes()).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((kept.format, kept.certs), (CaFormat::Pem, cas.clone()));
    }

    #[test]
    fn a_ca_file_that_is_not_one_says_what_it_is() {
        let cas = two_cas();
        assert_eq!(parse_ca(b""), Err(CaParseError::Empty));
        assert_eq!(
            parse_ca(pem("PRIVATE KEY", &[1, 2, 3]).as_bytes()),
            Err(CaParseError::Empty),
            "a key file holds no certificate"
        );
        let Err(CaParseError::Invalid { what, reason }) = parse_ca(b"\x30\x03\x02\x01\x01") else {
            panic!("not a certificate")
        };
        assert_eq!(what, "the file");
        assert!(
            reason.contains("neither a DER certificate nor a PKCS#7 bundle"),
            "{reason}"
        );
        // A DER certificate with bytes after it is no DER certificate.
        let mut trailing = cas[0].clone();
        trailing.extend_from_slice(b"junk");
        assert!(matches!(
            parse_ca(&trailing),
            Err(CaParseError::Invalid { .. })
        ));
        // A PEM block labelled CERTIFICATE that holds something else.
        let Err(CaParseError::Invalid { what, .. }) =
            parse_ca(pem("CERTIFICATE", &[0x30, 0x00]).as_bytes())
        else {
            panic!("not a certificate")
        };
        assert_eq!(what, "certificate 1");
        let e = CaFileError::Empty {
            path: "C:\\ca.txt".into(),
        }
        .to_string();
        assert!(
            e.contains("PEM") && e.contains("DER") && e.contains(".p7b"),
            "names every format it takes: {e}"
        );
    }

    fn info(names: &[&str], subject: &str) -> CertInfo {
        CertInfo {
            subject: subject.into(),
            issuer: "CN=CA".into(),
            dns_names: names.iter().map(|s| s.to_string()).collect(),
            not_before: String::new(),
            not_after: String::new(),
            not_before_unix: 100,
            not_after_unix: 200,
            sha256: String::new(),
            self_signed: false,
            revocation: Vec::new(),
        }
    }

    #[test]
    fn matches_sans_wildcards_and_a_bare_subject_cn() {
        let c = info(&["dc1.example.com", "*.corp.example.com"], "CN=ignored");
        assert!(c.matches_host("DC1.example.com"));
        assert!(c.matches_host("dc9.corp.example.com"));
        assert!(!c.matches_host("a.b.corp.example.com"));
        assert!(!c.matches_host("ignored"));
        let samba = info(
            &[],
            "O=Samba Administration, OU=Samba - temporary autogenerated HOST certificate, CN=DC1.example.com",
        );
        assert!(samba.matches_host("dc1.example.com"));
        assert!(!samba.matches_host("dc2.example.com"));
    }

    #[test]
    fn diagnoses_expiry_before_names() {
        let c = info(&["dc1.example.com"], "CN=x");
        assert_eq!(c.diagnose("dc1.example.com", 300), CertProblem::Expired);
        assert_eq!(c.diagnose("dc1.example.com", 50), CertProblem::NotYetValid);
        assert_eq!(c.diagnose("other", 150), CertProblem::NameMismatch);
        assert_eq!(c.diagnose("dc1.example.com", 150), CertProblem::Untrusted);
    }

    #[test]
    fn the_libraries_verdict_names_the_real_cause() {
        let c = info(&["dc1.example.com"], "CN=x");
        // Wine's SChannel, and Windows when its CRL server is offline: the chain is trusted,
        // the revocation check failed. The certificate alone would read as "untrusted".
        let wine = "native TLS error: OS Error -2146762482 (FormatMessageW() returned error 317)";
        assert_eq!(library_verdict(wine), Some(CertProblem::RevocationUnknown));
        assert_eq!(
            diagnose_failure(Some(&c), "dc1.example.com", 150, wine),
            Some(CertProblem::RevocationUnknown)
        );
        let windows = "The revocation function was unable to check revocation because the revocation server was offline. (os error -2146885613)";
        assert_eq!(
            library_verdict(windows),
            Some(CertProblem::RevocationUnknown)
        );
        assert_eq!(
            library_verdict(
                "A certificate chain processed, but terminated in a root certificate which is not trusted by the trust provider. (os error -2146762487)"
            ),
            Some(CertProblem::Untrusted)
        );
        assert_eq!(
            library_verdict("(os error -2146762481)"),
            Some(CertProblem::NameMismatch)
        );
        // CERT_E_EXPIRED also covers "not valid yet": the certificate's dates decide.
        assert_eq!(
            diagnose_failure(Some(&c), "dc1.example.com", 50, "(os error -2146762495)"),
            Some(CertProblem::NotYetValid)
        );
        assert_eq!(
            library_verdict(
                "error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify failed:../ssl/statem/statem_clnt.c:1889: (unable to get local issuer certificate)"
            ),
            Some(CertProblem::Untrusted)
        );
        assert_eq!(
            library_verdict("certificate verify failed: (certificate has expired)"),
            Some(CertProblem::Expired)
        );
        // No verdict in the words (a Win32 error, a reset): the certificate's fields decide.
        assert_eq!(library_verdict("connection reset (os error 10054)"), None);
        assert_eq!(
            diagnose_failure(Some(&c), "other", 150, "handshake failed"),
            Some(CertProblem::NameMismatch)
        );
        assert_eq!(diagnose_failure(None, "x", 150, "handshake failed"), None);
        // SChannel refusing an address the certificate does carry as an IP SAN.
        let by_ip = info(&["localhost", "127.0.0.1"], "CN=localhost");
        assert_eq!(
            diagnose_failure(Some(&by_ip), "127.0.0.1", 150, "(os error -2146762481)"),
            Some(CertProblem::IpAddressNotMatched)
        );
        assert_eq!(
            diagnose_failure(Some(&by_ip), "10.0.0.9", 150, "(os error -2146762481)"),
            Some(CertProblem::NameMismatch)
        );
    }

    #[test]
    fn reads_where_revocation_can_be_checked() {
        let mut params = rcgen::CertificateParams::new(vec!["dc1.example.com".into()])
            .unwrap_or_else(|e| panic!("{e}"));
        params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
            uris: vec!["http://pki.example.com/ca.crl".into()],
        }];
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let cert = params.self_signed(&key).unwrap_or_else(|e| panic!("{e}"));
        let info = CertInfo::from_der(cert.der()).unwrap_or_else(|| panic!("parse"));
        assert_eq!(
            info.revocation,
            vec!["CRL http://pki.example.com/ca.crl".to_string()]
        );
        assert!(
            info.describe()
                .contains("revocation: CRL http://pki.example.com/ca.crl")
        );
        let bare = rcgen::CertificateParams::new(vec!["dc1.example.com".into()])
            .unwrap_or_else(|e| panic!("{e}"))
            .self_signed(&key)
            .unwrap_or_else(|e| panic!("{e}"));
        let info = CertInfo::from_der(bare.der()).unwrap_or_else(|| panic!("parse"));
        assert!(info.revocation.is_empty());
        assert!(
            info.describe().contains("revocation: none named"),
            "{}",
            info.describe()
        );
    }
}
