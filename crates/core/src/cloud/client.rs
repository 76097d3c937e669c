//! The agent API client (reqwest over native TLS, like the LDAP side): what the wizard, `check`,
//! `validate-key` and the agent use to talk to the cloud.
//!
//! Every call has a connect timeout and an overall timeout, and is cancelled by dropping its
//! future. Trust is the system roots plus an optional PEM CA file. `HTTPS_PROXY`/`ALL_PROXY` and
//! `NO_PROXY` are honoured, and this module decides which applies, so a failure can say whether
//! the proxy or the cloud was at fault. Every failure becomes a `CloudError` in words: DNS,
//! refused, timeout, TLS (with the certificate's details), proxy, HTTP status and API code.
//!
//! Not here: what the wizard makes of a key state (preflight/cloud.rs).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cloud::api::{
    AckRequest, AckResponse, ChangeResult, ChangesResponse, DirectoryResponse, EnrollResponse,
    ErrorBody, Health, HeartbeatRequest, HeartbeatResponse, ImportRequest, ImportResponse,
    KeyCheckResponse,
};
use crate::connect_key::ConnectKey;
use crate::directory::cert::{self, CertInfo, CertProblem};
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct CloudOptions {
    pub url: String,
    pub ca_file: Option<PathBuf>,
    /// Each request's limit, connect and TLS included.
    pub timeout: Duration,
    /// How requests reach the cloud.
    pub route: Route,
}

impl CloudOptions {
    pub fn new(url: impl Into<String>) -> Self {
        CloudOptions {
            url: url.into(),
            ca_file: None,
            timeout: Duration::from_secs(10),
            route: Route::Environment,
        }
    }
}

/// How requests reach the cloud.
#[derive(Debug, Clone, Default)]
pub enum Route {
    /// The proxy the environment names (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`), as curl reads
    /// it: commands that have no answers file (`validate-key`).
    #[default]
    Environment,
    /// Directly, whatever the environment says: answers and configs without `[cloud] proxy`.
    Direct,
    /// Through `[cloud] proxy`, with Basic authentication when a user is given. The tunnel is
    /// HTTP CONNECT: TLS still runs end to end with the cloud, whose certificate is checked as
    /// on a direct route.
    Proxy {
        url: String,
        username: Option<String>,
        password: Option<Secret>,
    },
}

/// Why `url` cannot be a `[cloud] proxy`, if it cannot.
pub fn check_proxy_url(url: &str) -> Result<(), String> {
    let u = Url::parse(url.trim()).map_err(|e| {
        format!("{e}; give it as http://host:port, e.g. http://proxy.corp.example:3128")
    })?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!(
            "the scheme {}:// is not supported; give an HTTP proxy as http://host:port",
            u.scheme()
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("it has no host name; give it as http://host:port".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("it must not hold a user name or password (the config is not a secret store); give proxy_username and proxy_password_file instead".into());
    }
    if !matches!(u.path(), "" | "/") || u.query().is_some() {
        return Err("it must not have a path or ?query; give it as http://host:port".into());
    }
    Ok(())
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CloudError {
    #[error("cloud URL `{url}`: {why}")]
    BadUrl { url: String, why: String },
    #[error("cloud CA file: {0}")]
    CaFile(String),
    #[error("the cloud's name `{host}` does not resolve ({detail})")]
    Dns { host: String, detail: String },
    #[error("{addr} refused the connection: nothing is listening on that port")]
    Refused { addr: String },
    #[error("no answer from {what} within {secs} s")]
    Timeout { what: String, secs: u64 },
    #[error("the cloud's TLS certificate was not accepted: {}", problem_words(*.problem, .host))]
    Tls {
        host: String,
        problem: CertProblem,
        cert: Option<Box<CertInfo>>,
        detail: String,
    },
    #[error("the proxy {proxy} (from {var}) failed: {detail}")]
    Proxy {
        proxy: String,
        var: &'static str,
        detail: String,
    },
    #[error("the cloud answered HTTP {status} `{code}`: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("the server at {url} does not speak the ad-sync cloud API ({detail})")]
    Protocol { url: String, detail: String },
    #[error(
        "the cloud at {url} answered HTTP {status} with a redirect to `{to}`; ad-sync never follows redirects, so nothing was sent there"
    )]
    Redirect {
        url: String,
        status: u16,
        to: String,
    },
    #[error("the cloud's answer to {path} is larger than {limit} bytes; it was not read")]
    TooLarge { path: String, limit: usize },
    #[error("could not reach the cloud: {0}")]
    Connect(String),
}

fn problem_words(problem: CertProblem, host: &str) -> String {
    match problem {
        CertProblem::Expired => "it has expired".into(),
        CertProblem::NotYetValid => "it is not valid yet (check this server's clock)".into(),
        CertProblem::NameMismatch => format!("it is not issued for `{host}`"),
        CertProblem::Untrusted => {
            "it is not signed by a certificate authority this server trusts".into()
        }
        CertProblem::RevocationUnknown => {
            "its chain is trusted, but whether it was revoked could not be checked".into()
        }
        CertProblem::Revoked => "it has been revoked by its certificate authority".into(),
        CertProblem::IpAddressNotMatched => format!(
            "it names `{host}` as an IP address, which this system's TLS library does not match (it matches DNS names)"
        ),
    }
}

impl CloudError {
    /// What to do about it, for the wizard's and `check`'s "fix" line.
    pub fn fix(&self) -> String {
        match self {
            CloudError::BadUrl { .. } => {
                "Give the cloud's base address, like https://cloud.example.com".into()
            }
            CloudError::CaFile(_) => {
                "Point [cloud] ca_file at the cloud's CA certificate: PEM, DER (.cer, .crt) or a PKCS#7 bundle (.p7b)".into()
            }
            CloudError::Dns { .. } => "Check the URL's spelling and this server's DNS servers (nslookup <host>).".into(),
            CloudError::Refused { .. } => {
                "Check the URL's port, and that the cloud service is running there.".into()
            }
            CloudError::Timeout { .. } => "Check firewalls and routes between this server and the cloud (outbound HTTPS), then retry.".into(),
            CloudError::Tls { problem, cert, .. } => match problem {
                CertProblem::Untrusted => "Give the CA that signed the cloud's certificate as [cloud] ca_file (for `ad-sync-cloud serve --self-signed DIR` that is DIR/ca.pem), or install it in this server's trusted roots.".into(),
                CertProblem::Expired | CertProblem::NotYetValid => "Renew the cloud's certificate (or correct this server's clock).".into(),
                CertProblem::RevocationUnknown => "Make the CRL distribution point or OCSP server that the cloud's certificate names reachable from this server (outbound HTTP), or ask the cloud's operator for a certificate whose CA publishes one.".into(),
                CertProblem::Revoked => "Ask the cloud's operator to replace its revoked certificate.".into(),
                CertProblem::IpAddressNotMatched => format!(
                    "Use the cloud's DNS name in the URL{}.",
                    cert.as_ref()
                        .map(|c| format!(" (the certificate names: {})", c.names().join(", ")))
                        .unwrap_or_default()
                ),
                CertProblem::NameMismatch => format!(
                    "Use a URL whose host the certificate names{}.",
                    cert.as_ref()
                        .map(|c| format!(": {}", c.names().join(", ")))
                        .unwrap_or_default()
                ),
            },
            CloudError::Proxy { var, .. } if *var == CONFIGURED_PROXY => {
                "Check [cloud] proxy (host and port) and, when the proxy asks for a login, proxy_username and proxy_password; remove proxy if the cloud is reached directly.".into()
            }
            CloudError::Proxy { var, .. } => format!(
                "Check {var}, or add the cloud's host to NO_PROXY if it should be reached directly."
            ),
            CloudError::Api { code, .. } => match code.as_str() {
                "key_used" | "key_expired" | "key_unknown" | "wrong_domain" => {
                    "Issue a new connect key for this domain in the cloud console and paste it.".into()
                }
                "unauthorized" => "Enroll the agent again with a new connect key (re-run the installer).".into(),
                "rate_limited" => "Wait a minute, check the key, and try again.".into(),
                _ => "If it persists, look at the cloud's status page and logs.".into(),
            },
            CloudError::Protocol { .. } => {
                "Give the cloud's base address as its operator gave it (without /v1), like https://cloud.example.com".into()
            }
            CloudError::Redirect { .. } => "If the address it points to is the cloud's, give that (https://) address as the cloud URL; a redirect could carry the connect key or the agent's credential elsewhere, so it is never followed.".into(),
            CloudError::TooLarge { .. } => "Check that the cloud URL is the cloud's own address (not a proxy's error page or another service).".into(),
            CloudError::Connect(_) => "Check the network path to the cloud.".into(),
        }
    }

    /// The certificate's details, when the failure was TLS and they could be read.
    pub fn certificate(&self) -> Option<&CertInfo> {
        match self {
            CloudError::Tls { cert, .. } => cert.as_deref(),
            _ => None,
        }
    }

    /// What the TLS library itself said, when the failure was TLS: the words behind the
    /// verdict (SChannel's code, OpenSSL's reason), for the check's detail.
    pub fn tls_library_words(&self) -> Option<&str> {
        match self {
            CloudError::Tls { detail, .. } if !detail.trim().is_empty() => Some(detail),
            _ => None,
        }
    }

    /// The API error code, when the cloud gave one.
    pub fn api_code(&self) -> Option<&str> {
        match self {
            CloudError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// The proxy that applies to a URL: from the environment as curl reads it, or configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyChoice {
    pub url: String,
    /// Where it was found: the variable's name, or `[cloud] proxy`.
    pub var: &'static str,
}

/// Where a configured proxy is named in errors.
pub const CONFIGURED_PROXY: &str = "[cloud] proxy";

/// Which proxy (if any) the environment sets for `host`: `HTTPS_PROXY` (or `ALL_PROXY`), unless
/// `NO_PROXY` names the host, a parent domain, its address, a CIDR block around it, or `*`.
pub fn proxy_for(host: &str, env: impl Fn(&str) -> Option<String>) -> Option<ProxyChoice> {
    let pick = |names: [&'static str; 2]| {
        names.into_iter().find_map(|n| {
            env(n)
                .filter(|v| !v.trim().is_empty())
                .map(|v| ProxyChoice {
                    url: v.trim().to_string(),
                    var: n,
                })
        })
    };
    let choice =
        pick(["HTTPS_PROXY", "https_proxy"]).or_else(|| pick(["ALL_PROXY", "all_proxy"]))?;
    let no_proxy = env("NO_PROXY")
        .or_else(|| env("no_proxy"))
        .unwrap_or_default();
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let host_ip: Option<IpAddr> = host.parse().ok();
    let bypass = no_proxy
        .split(',')
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            if let Some(ip) = host_ip {
                if let Some((net, bits)) = entry.split_once('/') {
                    return in_cidr(ip, net, bits);
                }
                return entry.parse::<IpAddr>().is_ok_and(|e| e == ip);
            }
            let domain = entry.trim_start_matches("*.").trim_start_matches('.');
            host == domain || host.ends_with(&format!(".{domain}"))
        });
    (!bypass).then_some(choice)
}

fn in_cidr(ip: IpAddr, net: &str, bits: &str) -> bool {
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// A proxy URL with any user:password removed, for messages.
fn redact_proxy(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            // Both only fail for URLs that cannot hold a user (no host): nothing to remove then.
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.to_string().trim_end_matches('/').to_string()
        }
        Err(_) => "(unparseable proxy URL)".into(),
    }
}

/// `text` with the `user:password@` of every URL in it removed: the proxy's URL may appear in
/// an error as the HTTP stack normalised it (scheme and host lowercased, a `/` added, the
/// password percent-encoded), so matching the configured string alone could miss it.
fn strip_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c == ')' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        out.push_str(
            authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host),
        );
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// How the cloud was reached (`cloud.reachable`).
#[derive(Debug, Clone)]
pub struct Reach {
    /// The address connected to: the cloud's, or the proxy's.
    pub addr: SocketAddr,
    pub via_proxy: Option<String>,
}

/// How long a connection to the cloud is kept for the next request. The server closes a
/// connection idle for 10 s; reusing one only younger than that avoids racing its close.
pub const POOL_IDLE: Duration = Duration::from_secs(5);

pub struct CloudClient {
    http: reqwest::Client,
    base: Url,
    host: String,
    port: u16,
    proxy: Option<ProxyChoice>,
    timeout: Duration,
    /// The `ca_file` trusted besides the system's roots, as read: "ca.p7b (a PKCS#7 bundle
    /// (DER), 2 certificates)".
    ca_file: Option<String>,
}

/// The largest answer read from the cloud. The biggest legitimate one, the names of a large
/// directory for the preview, is a few MB.
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

impl CloudClient {
    pub fn new(opts: &CloudOptions) -> Result<Self, CloudError> {
        let bad = |why: &str| CloudError::BadUrl {
            url: opts.url.clone(),
            why: why.into(),
        };
        let mut base = Url::parse(opts.url.trim()).map_err(|e| bad(&e.to_string()))?;
        if base.scheme() != "https" {
            return Err(bad(
                "it must start with https:// (the agent API is only offered over TLS)",
            ));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(bad("it must not contain a user name or password"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(bad("it must not have a ?query or #fragment"));
        }
        let host = base
            .host_str()
            .ok_or_else(|| bad("it has no host name"))?
            .to_string();
        let port = base.port_or_known_default().unwrap_or(443);
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let (proxy, auth) = match &opts.route {
            Route::Environment => (proxy_for(&host, |n| std::env::var(n).ok()), None),
            Route::Direct => (None, None),
            Route::Proxy {
                url,
                username,
                password,
            } => {
                check_proxy_url(url).map_err(|why| CloudError::Proxy {
                    proxy: redact_proxy(url),
                    var: CONFIGURED_PROXY,
                    detail: why,
                })?;
                (
                    Some(ProxyChoice {
                        url: url.trim().to_string(),
                        var: CONFIGURED_PROXY,
                    }),
                    username.clone().map(|u| (u, password.clone())),
                )
            }
        };
        let mut builder = reqwest::Client::builder()
            .tls_backend_native()
            .connect_timeout(opts.timeout)
            .timeout(opts.timeout)
            .pool_idle_timeout(POOL_IDLE)
            // A redirect is an error that names where it pointed (`send`): it could take the
            // request's body (a connect key) or the Authorization header elsewhere, or to
            // plain http://.
            .redirect(reqwest::redirect::Policy::none())
            .https_only(true)
            .user_agent(concat!("ad-sync/", env!("CARGO_PKG_VERSION")));
        let mut ca_read = None;
        if let Some(ca) = &opts.ca_file {
            let ders = cert::load_ca_file(ca).map_err(|e| CloudError::CaFile(e.to_string()))?;
            ca_read = Some(format!("{} ({})", ca.display(), ders.describe()));
            let certs = ders
                .certs
                .iter()
                .map(|d| reqwest::Certificate::from_der(d))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| CloudError::CaFile(format!("{}: {e}", ca.display())))?;
            builder = builder.tls_certs_merge(certs);
        }
        builder = match &proxy {
            Some(p) => {
                let mut proxy = reqwest::Proxy::all(&p.url).map_err(|e| CloudError::Proxy {
                    proxy: redact_proxy(&p.url),
                    var: p.var,
                    detail: format!("not a usable proxy URL: {e}"),
                })?;
                if let Some((user, password)) = &auth {
                    proxy = proxy.basic_auth(
                        user,
                        password.as_ref().map(|p| p.expose()).unwrap_or_default(),
                    );
                }
                builder.proxy(proxy)
            }
            None => builder.no_proxy(),
        };
        let http = builder
            .build()
            .map_err(|e| CloudError::Connect(format!("the HTTPS client could not start: {e}")))?;
        Ok(CloudClient {
            http,
            base,
            host,
            port,
            proxy,
            timeout: opts.timeout,
            ca_file: ca_read,
        })
    }

    /// The `ca_file` trusted besides the system's roots, and what it held.
    pub fn ca_file(&self) -> Option<&str> {
        self.ca_file.as_deref()
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// DNS and TCP only, to the cloud or to the proxy: whether anything answers at all.
    pub async fn reachable(&self) -> Result<Reach, CloudError> {
        let (host, port, via) = match &self.proxy {
            Some(p) => {
                let u = Url::parse(&p.url).map_err(|e| CloudError::Proxy {
                    proxy: redact_proxy(&p.url),
                    var: p.var,
                    detail: e.to_string(),
                })?;
                (
                    u.host_str().unwrap_or_default().to_string(),
                    u.port_or_known_default().unwrap_or(3128),
                    Some(redact_proxy(&p.url)),
                )
            }
            None => (self.host.clone(), self.port, None),
        };
        let lookup_host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let secs = self.timeout.as_secs().max(1);
        let addrs: Vec<SocketAddr> = match tokio::time::timeout(
            self.timeout,
            tokio::net::lookup_host((lookup_host.as_str(), port)),
        )
        .await
        {
            Err(_) => {
                return Err(CloudError::Timeout {
                    what: format!("DNS for {host}"),
                    secs,
                });
            }
            Ok(Err(e)) => return Err(self.dns_or_proxy(&host, e.to_string())),
            Ok(Ok(a)) => a.collect(),
        };
        let mut last = None;
        for addr in &addrs {
            match tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(_)) => {
                    return Ok(Reach {
                        addr: *addr,
                        via_proxy: via,
                    });
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    last = Some(self.via_proxy(CloudError::Refused {
                        addr: addr.to_string(),
                    }));
                }
                Ok(Err(e)) => {
                    last = Some(self.via_proxy(CloudError::Connect(format!("{addr}: {e}"))))
                }
                Err(_) => {
                    last = Some(self.via_proxy(CloudError::Timeout {
                        what: format!("TCP connect to {addr}"),
                        secs,
                    }))
                }
            }
        }
        Err(last.unwrap_or_else(|| self.dns_or_proxy(&host, "no addresses".into())))
    }

    fn dns_or_proxy(&self, host: &str, detail: String) -> CloudError {
        self.via_proxy(CloudError::Dns {
            host: host.to_string(),
            detail,
        })
    }

    /// A failure on the way to the proxy is the proxy's.
    fn via_proxy(&self, err: CloudError) -> CloudError {
        match &self.proxy {
            Some(p) => CloudError::Proxy {
                proxy: redact_proxy(&p.url),
                var: p.var,
                detail: err.to_string(),
            },
            None => err,
        }
    }

    pub async fn health(&self) -> Result<Health, CloudError> {
        self.call::<(), Health>(Method::GET, "v1/health", None, None)
            .await
    }

    pub async fn check_key(
        &self,
        key: &ConnectKey,
        domain: Option<&str>,
    ) -> Result<KeyCheckResponse, CloudError> {
        #[derive(Serialize)]
        struct Body<'a> {
            key: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            domain: Option<&'a str>,
        }
        let body = Body {
            key: key.secret().expose(),
            domain,
        };
        self.call(Method::POST, "v1/keys/check", None, Some(&body))
            .await
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn enroll(
        &self,
        key: &ConnectKey,
        domain: &str,
        host: &str,
        version: &str,
        os: &str,
        public_key: &str,
    ) -> Result<EnrollResponse, CloudError> {
        #[derive(Serialize)]
        struct Body<'a> {
            key: &'a str,
            domain: &'a str,
            host: &'a str,
            version: &'a str,
            os: &'a str,
            public_key: &'a str,
        }
        let body = Body {
            key: key.secret().expose(),
            domain,
            host,
            version,
            os,
            public_key,
        };
        self.call(Method::POST, "v1/agents/enroll", None, Some(&body))
            .await
    }

    pub async fn heartbeat(
        &self,
        credential: &Secret,
        req: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, CloudError> {
        self.call(
            Method::POST,
            "v1/agents/heartbeat",
            Some(credential),
            Some(req),
        )
        .await
    }

    /// The agent as the cloud sees it (role, health, last heard from).
    pub async fn agent_self(
        &self,
        credential: &Secret,
    ) -> Result<crate::cloud::api::AgentSelf, CloudError> {
        self.call::<(), _>(Method::GET, "v1/agents/self", Some(credential), None)
            .await
    }

    pub async fn deregister(&self, credential: &Secret) -> Result<(), CloudError> {
        self.send::<()>(Method::DELETE, "v1/agents/self", Some(credential), None)
            .await
            .map(|_| ())
    }

    pub async fn changes(
        &self,
        credential: &Secret,
        after: i64,
        limit: i64,
    ) -> Result<ChangesResponse, CloudError> {
        let path = format!("v1/changes?after={after}&limit={limit}");
        self.call::<(), _>(Method::GET, &path, Some(credential), None)
            .await
    }

    pub async fn ack(
        &self,
        credential: &Secret,
        results: Vec<ChangeResult>,
    ) -> Result<AckResponse, CloudError> {
        self.call(
            Method::POST,
            "v1/changes/ack",
            Some(credential),
            Some(&AckRequest { results }),
        )
        .await
    }

    /// The cloud's users and groups by name, for the preview; the key is checked, never used.
    pub async fn directory(&self, key: &ConnectKey) -> Result<DirectoryResponse, CloudError> {
        #[derive(Serialize)]
        struct Body<'a> {
            key: &'a str,
        }
        let body = Body {
            key: key.secret().expose(),
        };
        self.call(Method::POST, "v1/keys/directory", None, Some(&body))
            .await
    }

    /// Imports AD objects into the cloud (at most `MAX_IMPORT_ITEMS` per call).
    pub async fn import(
        &self,
        credential: &Secret,
        request: &ImportRequest,
    ) -> Result<ImportResponse, CloudError> {
        self.call(Method::POST, "v1/import", Some(credential), Some(request))
            .await
    }

    /// Where the cloud's record of this domain's AD changes stands (AD as a source).
    pub async fn source_cursor(
        &self,
        credential: &Secret,
    ) -> Result<crate::cloud::api::SourceCursor, CloudError> {
        self.call::<(), _>(Method::GET, "v1/source/cursor", Some(credential), None)
            .await
    }

    /// The users the cloud holds from AD in this agent's domain, after `after` (objectGUID
    /// order; `more` when there are others).
    pub async fn source_users(
        &self,
        credential: &Secret,
        after: Option<&str>,
    ) -> Result<crate::cloud::api::SourceUsers, CloudError> {
        self.source_page("users", credential, after).await
    }

    /// The groups the cloud holds from AD in this agent's domain, after `after`, as
    /// `source_users` lists the users.
    pub async fn source_groups(
        &self,
        credential: &Secret,
        after: Option<&str>,
    ) -> Result<crate::cloud::api::SourceGroups, CloudError> {
        self.source_page("groups", credential, after).await
    }

    /// A page of `GET /v1/source/<what>` after `after` (absent: the first).
    async fn source_page<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        credential: &Secret,
        after: Option<&str>,
    ) -> Result<T, CloudError> {
        let path = match after {
            // A GUID is hex and dashes: nothing to escape.
            Some(g) => format!("v1/source/{what}?after={g}"),
            None => format!("v1/source/{what}"),
        };
        self.call::<(), _>(Method::GET, &path, Some(credential), None)
            .await
    }

    /// `GET /v1/source/contacts`: the contacts the cloud holds from AD, a page after `after`.
    pub async fn source_contacts(
        &self,
        credential: &Secret,
        after: Option<&str>,
    ) -> Result<crate::cloud::api::SourceContacts, CloudError> {
        self.source_page("contacts", credential, after).await
    }

    /// Which of `guids` (users, groups and contacts) the cloud holds from AD in this agent's
    /// domain.
    pub async fn source_lookup(
        &self,
        credential: &Secret,
        guids: &[String],
    ) -> Result<crate::cloud::api::SourceUsers, CloudError> {
        let body = crate::cloud::api::SourceLookup {
            guids: guids.to_vec(),
        };
        self.call(
            Method::POST,
            "v1/source/lookup",
            Some(credential),
            Some(&body),
        )
        .await
    }

    /// AD's changes from `request.after` to `request.cookie`, committed with the cursor.
    pub async fn source_changes(
        &self,
        credential: &Secret,
        request: &crate::cloud::api::SourceRequest,
    ) -> Result<crate::cloud::api::SourceResponse, CloudError> {
        self.call(
            Method::POST,
            "v1/source/changes",
            Some(credential),
            Some(request),
        )
        .await
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        credential: Option<&Secret>,
        body: Option<&B>,
    ) -> Result<T, CloudError> {
        let bytes = self.send(method, path, credential, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| CloudError::Protocol {
            url: self.base.to_string(),
            detail: format!("its answer to {path} is not the documented JSON: {e}"),
        })
    }

    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        credential: Option<&Secret>,
        body: Option<&B>,
    ) -> Result<Vec<u8>, CloudError> {
        let url = self.base.join(path).map_err(|e| CloudError::BadUrl {
            url: self.base.to_string(),
            why: e.to_string(),
        })?;
        let mut req = self.http.request(method.clone(), url);
        if let Some(c) = credential {
            req = req.bearer_auth(c.expose());
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        // An agent's call that is safe to repeat, whose connection dropped, is sent once more
        // on a new connection: behind a load balancer the node that held it may be gone while
        // the others serve. Never after a TLS failure or a timeout.
        let again = credential
            .filter(|_| safe_to_repeat(&method, path))
            .and_then(|_| req.try_clone());
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => match again {
                Some(again) if connection_dropped(&e) => {
                    // Never a proxy's credentials, in whatever form the error spelled them.
                    tracing::info!(
                        "the connection to the cloud dropped ({}); sending {path} again",
                        strip_userinfo(&root_cause(&e))
                    );
                    match again.send().await {
                        Ok(r) => r,
                        Err(e) => return Err(self.classify(e).await),
                    }
                }
                _ => return Err(self.classify(e).await),
            },
        };
        let status = resp.status();
        if status.is_redirection() {
            return Err(CloudError::Redirect {
                url: self.base.to_string(),
                status: status.as_u16(),
                to: resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.chars().take(300).collect())
                    .unwrap_or_else(|| "(no Location header)".into()),
            });
        }
        // Read within a bound: whatever answers must not make the agent allocate without end.
        let too_large = || CloudError::TooLarge {
            path: path.to_string(),
            limit: MAX_RESPONSE_BYTES,
        };
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| CloudError::Connect(format!("the answer was cut off: {}", chain(&e))))?
        {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return Ok(bytes);
        }
        Err(self.http_error(status, &bytes))
    }

    fn http_error(&self, status: StatusCode, bytes: &[u8]) -> CloudError {
        match serde_json::from_slice::<ErrorBody>(bytes) {
            Ok(b) => CloudError::Api {
                status: status.as_u16(),
                code: b.error.code,
                message: b.error.message,
            },
            Err(_)
                if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED && self.proxy.is_some() =>
            {
                self.via_proxy(CloudError::Connect(
                    "the proxy wants credentials (HTTP 407)".into(),
                ))
            }
            Err(_) => CloudError::Protocol {
                url: self.base.to_string(),
                detail: format!(
                    "HTTP {status} without an API error body: is this the cloud's base address?"
                ),
            },
        }
    }

    /// Turns a transport failure into what happened, in words.
    async fn classify(&self, e: reqwest::Error) -> CloudError {
        let secs = self.timeout.as_secs().max(1);
        // The words are shown (Connect, a TLS failure's detail): never a proxy's credentials,
        // in whatever form the HTTP stack spelled its URL.
        let text = strip_userinfo(&chain(&e));
        if e.is_timeout() {
            return CloudError::Timeout {
                what: format!("the cloud at {}", self.base),
                secs,
            };
        }
        let refused = source_io_kind(&e) == Some(std::io::ErrorKind::ConnectionRefused);
        let lower = text.to_ascii_lowercase();
        if let Some(p) = &self.proxy
            && (e.is_connect() || lower.contains("proxy"))
            && !is_tls(&e, &lower)
        {
            return CloudError::Proxy {
                proxy: redact_proxy(&p.url),
                var: p.var,
                detail: root_cause(&e),
            };
        }
        if is_tls(&e, &lower) {
            return self.tls_error(text).await;
        }
        if refused {
            return CloudError::Refused {
                addr: format!("{}:{}", self.host, self.port),
            };
        }
        if lower.contains("dns error") || lower.contains("failed to lookup") {
            return CloudError::Dns {
                host: self.host.clone(),
                detail: root_cause(&e),
            };
        }
        CloudError::Connect(text)
    }

    /// Reads the certificate the cloud presents (without trusting it) to say why it failed.
    async fn tls_error(&self, detail: String) -> CloudError {
        let mut cert = None;
        if self.proxy.is_none() {
            let host = self.host.trim_start_matches('[').trim_end_matches(']');
            if let Ok(Ok(mut addrs)) =
                tokio::time::timeout(self.timeout, tokio::net::lookup_host((host, self.port))).await
                && let Some(addr) = addrs.next()
            {
                cert = cert::fetch_certificate(addr, host, false, self.timeout).await;
            }
        }
        let problem = cert::diagnose_failure(
            cert.as_ref(),
            &self.host,
            crate::time_fmt::now_unix(),
            &detail,
        )
        .unwrap_or(CertProblem::Untrusted);
        CloudError::Tls {
            host: self.host.clone(),
            problem,
            cert: cert.map(Box::new),
            detail,
        }
    }
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// The innermost error's words: what actually went wrong, without the layers around it.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(s) = last.source() {
        last = s;
    }
    last.to_string()
}

fn source_io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = s.source();
    }
    None
}

/// Whether a call may be sent twice with the same effect as once: a read, a heartbeat (it
/// records the same call again), an acknowledgement (it replaces its result). Not an
/// enrollment, a deregistration, or AD's changes (whose second sending the cloud refuses as a
/// moved cursor).
fn safe_to_repeat(method: &Method, path: &str) -> bool {
    *method == Method::GET
        || matches!(
            path,
            "v1/agents/heartbeat" | "v1/changes/ack" | "v1/source/lookup"
        )
}

/// The connection failed under the request (reset, closed before the answer, refused), not
/// its TLS and not a timeout: worth one more try on a new connection.
fn connection_dropped(e: &reqwest::Error) -> bool {
    !e.is_timeout()
        && (e.is_connect() || e.is_request())
        && !is_tls(e, &chain(e).to_ascii_lowercase())
}

fn is_tls(e: &(dyn std::error::Error + 'static), lower: &str) -> bool {
    let mut source = e.source();
    while let Some(s) = source {
        if s.downcast_ref::<native_tls::Error>().is_some() {
            return true;
        }
        source = s.source();
    }
    lower.contains("certificate") || lower.contains("handshake") || lower.contains("ssl")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the calls whose second sending changes nothing are sent again after a dropped
    /// connection.
    #[test]
    fn only_calls_safe_to_repeat_are_sent_again() {
        for (method, path, again) in [
            (Method::GET, "v1/changes?after=5&limit=500", true),
            (Method::GET, "v1/agents/self", true),
            (Method::GET, "v1/source/users?after=x", true),
            (Method::POST, "v1/agents/heartbeat", true),
            (Method::POST, "v1/changes/ack", true),
            (Method::POST, "v1/source/lookup", true),
            (Method::POST, "v1/agents/enroll", false),
            (Method::DELETE, "v1/agents/self", false),
            (Method::POST, "v1/source/changes", false),
            (Method::POST, "v1/import", false),
            (Method::POST, "v1/keys/check", false),
        ] {
            assert_eq!(safe_to_repeat(&method, path), again, "{method} {path}");
        }
    }

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |n| {
            pairs
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn proxy_applies_unless_no_proxy_names_the_host() {
        let e = env(&[
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("NO_PROXY", "localhost, .corp.example,10.0.0.0/8,::1"),
        ]);
        assert_eq!(
            proxy_for("cloud.example.com", &e).map(|p| p.url),
            Some("http://proxy:3128".into())
        );
        assert!(proxy_for("localhost", &e).is_none());
        assert!(proxy_for("a.corp.example", &e).is_none());
        assert!(proxy_for("corp.example", &e).is_none());
        assert!(proxy_for("notcorp.example", &e).is_some());
        assert!(proxy_for("10.2.3.4", &e).is_none());
        assert!(proxy_for("11.2.3.4", &e).is_some());
        assert!(proxy_for("[::1]", &e).is_none());
    }

    #[test]
    fn no_proxy_star_and_fallbacks() {
        assert!(
            proxy_for(
                "x",
                env(&[("HTTPS_PROXY", "http://p:1"), ("no_proxy", "*")])
            )
            .is_none()
        );
        assert_eq!(
            proxy_for("x", env(&[("ALL_PROXY", "http://p:2")])).map(|p| p.var),
            Some("ALL_PROXY")
        );
        assert!(proxy_for("x", env(&[])).is_none());
    }

    #[test]
    fn proxy_credentials_never_reach_messages() {
        assert_eq!(
            redact_proxy("http://user:s3cret@proxy.example:3128"),
            "http://proxy.example:3128"
        );
        // In an error's words, as the HTTP stack may spell the URL.
        assert_eq!(
            strip_userinfo(
                "error sending request for url (https://cloud.example/v1): proxy http://User:s3cr%40t@proxy.example:3128/ refused: tcp connect error"
            ),
            "error sending request for url (https://cloud.example/v1): proxy http://proxy.example:3128/ refused: tcp connect error"
        );
        assert_eq!(strip_userinfo("no url here"), "no url here");
    }

    #[test]
    fn refuses_urls_that_are_not_https_bases() {
        for url in [
            "http://cloud.example.com",
            "https://u:p@cloud.example.com",
            "cloud.example.com",
            "https://cloud.example.com/?x=1",
        ] {
            assert!(
                matches!(
                    CloudClient::new(&CloudOptions::new(url)),
                    Err(CloudError::BadUrl { .. })
                ),
                "{url}"
            );
        }
        assert!(CloudClient::new(&CloudOptions::new("https://cloud.example.com/tenant")).is_ok());
    }
}
