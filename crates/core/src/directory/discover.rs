//! Finding a domain's controllers the way Windows does: the DNS SRV records
//! `_ldap._tcp.dc._msdcs.<domain>`, ordered by priority, then weight (highest first).
//!
//! DNS is this host's resolver, or the server `AD_SYNC_DNS_SERVER` names (an IP address): a
//! member server whose resolver is not one of the domain's DNS servers can still ask the
//! domain's, and the tests ask the test domain's without touching the machine's resolver.
//! Failures are said as sentences: which records are missing, which server did not answer.

use std::net::IpAddr;
use std::time::Duration;

/// The environment variable naming the DNS server to ask instead of this host's resolver.
pub const DNS_SERVER_ENV: &str = "AD_SYNC_DNS_SERVER";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DcCandidate {
    pub host: String,
    pub port: u16,
    pub priority: u16,
    pub weight: u16,
}

/// The DNS server `AD_SYNC_DNS_SERVER` names; `Err` when it is set to something else than an
/// IP address.
pub fn server_from_env() -> Result<Option<IpAddr>, String> {
    match std::env::var(DNS_SERVER_ENV) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map(Some).map_err(|_| {
            format!(
                "{DNS_SERVER_ENV} is `{}`, not an IP address; set it to the DNS server's address (e.g. 10.0.0.10) or unset it to use this host's resolver",
                v.trim()
            )
        }),
        _ => Ok(None),
    }
}

/// The DCs DNS names for `domain`, asking `server` (or this host's resolver when `None`);
/// `Err` says in words why none could be listed.
pub async fn domain_controllers(
    domain: &str,
    server: Option<IpAddr>,
    timeout: Duration,
) -> Result<Vec<DcCandidate>, String> {
    use hickory_resolver::TokioResolver;
    use hickory_resolver::config::{NameServerConfig, ResolverConfig};
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    use hickory_resolver::proto::rr::RData;

    let domain = domain.trim().trim_end_matches('.');
    if domain.is_empty() {
        return Err(
            "Domain to search is empty: type the AD domain's DNS name, like example.com".into(),
        );
    }
    if !domain.contains('.') || domain.contains([' ', '/', '\\', ':', '@']) {
        return Err(format!(
            "`{domain}` is not a DNS domain name: type the AD domain's DNS name, like example.com (not its NetBIOS name, a URL or a host:port)"
        ));
    }
    let mut builder = match server {
        Some(ip) => TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(vec![NameServerConfig::udp_and_tcp(ip)]),
            TokioRuntimeProvider::default(),
        ),
        None => TokioResolver::builder_tokio().map_err(|e| {
            format!("this host's DNS settings cannot be read ({e}); type the DC's name instead")
        })?,
    };
    builder.options_mut().timeout = timeout;
    builder.options_mut().attempts = 1;
    let resolver = builder
        .build()
        .map_err(|e| format!("the DNS resolver cannot start ({e}); type the DC's name instead"))?;
    let record = format!("_ldap._tcp.dc._msdcs.{domain}");
    let asked = match server {
        Some(ip) => format!("the DNS server {ip}"),
        None => "this host's DNS server".to_string(),
    };
    let lookup = tokio::time::timeout(timeout * 2, resolver.srv_lookup(format!("{record}.")))
        .await
        .map_err(|_| {
            format!(
                "{asked} did not answer within {} s; check that it is reachable, or type the DC's name",
                (timeout * 2).as_secs()
            )
        })?
        .map_err(|e| words(&e, domain, &record, &asked))?;
    let mut found: Vec<DcCandidate> = lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(srv) => Some(DcCandidate {
                host: srv.target.to_utf8().trim_end_matches('.').to_string(),
                port: srv.port,
                priority: srv.priority,
                weight: srv.weight,
            }),
            _ => None,
        })
        .filter(|c| !c.host.is_empty())
        .collect();
    found.sort_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then(b.weight.cmp(&a.weight))
            .then(a.host.cmp(&b.host))
    });
    found.dedup_by(|a, b| a.host.eq_ignore_ascii_case(&b.host));
    if found.is_empty() {
        return Err(no_records(domain, &record, &asked));
    }
    Ok(found)
}

fn no_records(domain: &str, record: &str, asked: &str) -> String {
    format!(
        "{domain}'s DNS has no domain controller records (`{record}`) on {asked}; check the domain name, and that this host uses one of the domain's DNS servers"
    )
}

/// A resolver error as a sentence: which name, which server, what to do.
fn words(e: &hickory_resolver::net::NetError, domain: &str, record: &str, asked: &str) -> String {
    use hickory_resolver::net::{DnsError, NetError};
    use hickory_resolver::proto::op::ResponseCode;
    let code = |c: ResponseCode| match c {
        ResponseCode::NXDomain => format!(
            "{asked} does not know `{record}`: {domain} is not an AD domain it serves; check the domain name, and that this host uses one of the domain's DNS servers"
        ),
        ResponseCode::ServFail => format!(
            "{asked} could not answer for {domain} (server failure); it may not serve that domain and have no forwarder: ask one of the domain's DNS servers"
        ),
        ResponseCode::Refused => {
            format!("{asked} refused to answer for {domain}; ask one of the domain's DNS servers")
        }
        other => format!("{asked} answered `{other}` for `{record}`"),
    };
    match e {
        NetError::Dns(DnsError::NoRecordsFound(nr)) => match nr.response_code {
            ResponseCode::NoError => no_records(domain, record, asked),
            c => code(c),
        },
        NetError::Dns(DnsError::ResponseCode(c)) => code(*c),
        NetError::Timeout => format!(
            "{asked} did not answer for {domain} in time; check that it is reachable, or type the DC's name"
        ),
        NetError::NoConnections => format!(
            "no DNS server could be reached ({asked}); check this host's network settings, or type the DC's name"
        ),
        other => format!("asking {asked} for `{record}` failed: {other}"),
    }
}

/// This host's DNS domain (the part of its full name after the first dot), when it has one:
/// on a member server, the AD domain it belongs to.
pub fn host_domain() -> Option<String> {
    let d = host_domain_raw()?;
    let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
    (d.contains('.') && !d.ends_with(".localdomain") && d != "localdomain").then_some(d)
}

#[cfg(windows)]
fn host_domain_raw() -> Option<String> {
    use windows_sys::Win32::System::SystemInformation::{
        ComputerNameDnsDomain, GetComputerNameExW,
    };
    let mut len: u32 = 0;
    // SAFETY: a null buffer with length 0 asks for the length needed.
    unsafe { GetComputerNameExW(ComputerNameDnsDomain, std::ptr::null_mut(), &mut len) };
    if len == 0 {
        return None;
    }
    let mut buf = vec![0u16; len as usize];
    // SAFETY: `buf` holds `len` UTF-16 units, as the call was told.
    let ok = unsafe { GetComputerNameExW(ComputerNameDnsDomain, buf.as_mut_ptr(), &mut len) };
    if ok == 0 {
        return None;
    }
    buf.truncate(len as usize);
    Some(String::from_utf16_lossy(&buf))
}

/// The host name's domain part, else resolv.conf's `domain`, else its first `search` domain.
#[cfg(not(windows))]
fn host_domain_raw() -> Option<String> {
    let name = gethostname::gethostname().to_string_lossy().to_string();
    if let Some((_, d)) = name.split_once('.') {
        return Some(d.to_string());
    }
    let conf = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    resolv_conf_domain(&conf)
}

#[cfg_attr(windows, allow(dead_code))]
fn resolv_conf_domain(conf: &str) -> Option<String> {
    let mut search = None;
    for line in conf.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("domain") => return words.next().map(str::to_string),
            Some("search") if search.is_none() => search = words.next().map(str::to_string),
            _ => {}
        }
    }
    search
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"))
    }

    #[test]
    fn a_name_that_is_not_a_domain_is_refused_in_words_before_dns_is_asked() {
        let rt = rt();
        let r = rt.block_on(domain_controllers("", None, Duration::from_millis(200)));
        assert_eq!(
            r,
            Err(
                "Domain to search is empty: type the AD domain's DNS name, like example.com".into()
            )
        );
        for bad in [
            "example",
            "exa mple.com",
            "ldap://example.com",
            "example.com:53",
        ] {
            let r = rt.block_on(domain_controllers(bad, None, Duration::from_millis(200)));
            assert!(
                r.as_ref().is_err_and(
                    |e| e.contains("is not a DNS domain name") && !e.contains("Query {")
                ),
                "{bad}: {r:?}"
            );
        }
    }

    #[test]
    fn a_server_that_never_answers_is_named_with_the_time_waited() {
        // 192.0.2.1 is TEST-NET-1: nothing answers there.
        let r = rt().block_on(domain_controllers(
            "example.com",
            Some("192.0.2.1".parse().unwrap_or_else(|e| panic!("{e}"))),
            Duration::from_millis(300),
        ));
        let e = r.err().unwrap_or_default();
        assert!(e.contains("the DNS server 192.0.2.1"), "{e}");
        assert!(!e.contains("Query {") && !e.contains("Name("), "{e}");
    }

    #[test]
    fn resolv_conf_gives_its_domain_or_first_search_domain() {
        assert_eq!(
            resolv_conf_domain("nameserver 10.0.0.1\nsearch corp.example.com example.com\n"),
            Some("corp.example.com".into())
        );
        assert_eq!(
            resolv_conf_domain("search a.example\ndomain b.example\n"),
            Some("b.example".into())
        );
        assert_eq!(resolv_conf_domain("nameserver 10.0.0.1\n"), None);
    }
}
