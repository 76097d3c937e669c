//! Finding a domain's controllers the way Windows does: the DNS SRV records
//! `_ldap._tcp.dc._msdcs.<domain>`, ordered by priority, then weight (highest first); then
//! this server's AD site, asked of the first DCs that answer an LDAP ping (`site`), and the
//! DCs of that site (`_ldap._tcp.<site>._sites.dc._msdcs.<domain>`) put first, so a branch
//! server is not offered a DC across the WAN.
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
    /// In this server's site (DNS lists it under the site's records).
    pub in_site: bool,
}

/// The DCs found, this server's site first, and what was learnt of the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    pub dcs: Vec<DcCandidate>,
    /// This server's AD site, as a DC answered the LDAP ping.
    pub site: Option<String>,
    /// Why the DCs are not ordered by site, when they are not.
    pub site_note: Option<String>,
}

/// How many DCs are pinged, one after the other, to learn this server's site.
const PINGED: usize = 3;

/// Puts the DCs of this server's site first (keeping DNS's order within each part); DCs the
/// site's records list but the domain's do not are added.
pub fn site_first(mut all: Vec<DcCandidate>, in_site: &[DcCandidate]) -> Vec<DcCandidate> {
    for dc in &mut all {
        dc.in_site = in_site
            .iter()
            .any(|s| s.host.eq_ignore_ascii_case(&dc.host));
    }
    for s in in_site {
        if !all.iter().any(|d| d.host.eq_ignore_ascii_case(&s.host)) {
            all.push(DcCandidate {
                in_site: true,
                ..s.clone()
            });
        }
    }
    // Stable: DNS's order stays within the site's DCs and within the others.
    all.sort_by_key(|d| !d.in_site);
    all
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

/// The DCs DNS names for `domain`, asking `server` (or this host's resolver when `None`), this
/// server's site's first; `Err` says in words why none could be listed.
pub async fn domain_controllers(
    domain: &str,
    server: Option<IpAddr>,
    timeout: Duration,
) -> Result<Discovered, String> {
    let (resolver, asked) = resolver(domain, server, timeout)?;
    let domain = domain.trim().trim_end_matches('.');
    let all = srv(&resolver, &asked, domain, None, timeout).await?;
    // The site, from the first DC that answers the ping; all of it within SITE_BUDGET.
    let site = match tokio::time::timeout(SITE_BUDGET, learn_site(&resolver, &asked, &all, domain))
        .await
    {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no DC answered the LDAP ping within {} s",
            SITE_BUDGET.as_secs()
        )),
    };
    let (dcs, site, site_note) = match site {
        Err(why) => (
            all,
            None,
            Some(format!(
                "this server's AD site could not be learnt ({why}), so every DC of the domain is listed in DNS's order"
            )),
        ),
        Ok(s) if s.is_empty() => (
            all,
            None,
            Some("no AD site's subnet holds this server's address (Active Directory Sites and Services, Subnets), so every DC of the domain is listed in DNS's order".into()),
        ),
        Ok(s) if !is_site_name(&s) => (
            all,
            None,
            Some(format!(
                "the DC named this server's site `{s}`, which is not a DNS label, so every DC of the domain is listed in DNS's order"
            )),
        ),
        Ok(s) => match srv(&resolver, &asked, domain, Some(&s), timeout).await {
            Ok(in_site) => (site_first(all, &in_site), Some(s), None),
            Err(e) => (
                all,
                Some(s.clone()),
                Some(format!("the DCs of site {s} could not be listed ({e}); every DC of the domain is listed")),
            ),
        },
    };
    Ok(Discovered {
        dcs,
        site,
        site_note,
    })
}

/// The most the site's part of a discovery may take: the DCs found are offered without it.
const SITE_BUDGET: Duration = Duration::from_secs(4);

/// This server's site as the first of the domain's DCs that answers the LDAP ping says it
/// (empty: no site's subnet holds this server's address); `Err` says why none answered.
async fn learn_site(
    resolver: &Resolver,
    asked: &str,
    all: &[DcCandidate],
    domain: &str,
) -> Result<String, String> {
    let mut why = Vec::new();
    for dc in all.iter().take(PINGED) {
        let ip = match resolver.lookup_ip(format!("{}.", dc.host)).await {
            Ok(ips) => ips.iter().next(),
            Err(e) => {
                why.push(address_words(&e, &dc.host, asked));
                continue;
            }
        };
        let Some(ip) = ip else {
            why.push(format!("{} has no address", dc.host));
            continue;
        };
        let addr = std::net::SocketAddr::new(ip, 389);
        match super::site::ping(addr, domain, Duration::from_millis(1500)).await {
            Ok(a) => return Ok(a.client_site),
            Err(e) => why.push(e),
        }
    }
    Err(why.join("; "))
}

/// Whether a site name can be put in a DNS name as one label (AD asks site names to be).
fn is_site_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

type Resolver = hickory_resolver::TokioResolver;

/// The resolver to ask, and how to name it in a sentence.
fn resolver(
    domain: &str,
    server: Option<IpAddr>,
    timeout: Duration,
) -> Result<(Resolver, String), String> {
    use hickory_resolver::TokioResolver;
    use hickory_resolver::config::{NameServerConfig, ResolverConfig};
    use hickory_resolver::net::runtime::TokioRuntimeProvider;

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
    let asked = match server {
        Some(ip) => format!("the DNS server {ip}"),
        None => "this host's DNS server".to_string(),
    };
    Ok((resolver, asked))
}

/// The DCs the domain's SRV records list (a site's, when `site` is given), in DNS's order.
async fn srv(
    resolver: &Resolver,
    asked: &str,
    domain: &str,
    site: Option<&str>,
    timeout: Duration,
) -> Result<Vec<DcCandidate>, String> {
    use hickory_resolver::proto::rr::RData;
    let record = match site {
        Some(site) => format!("_ldap._tcp.{site}._sites.dc._msdcs.{domain}"),
        None => format!("_ldap._tcp.dc._msdcs.{domain}"),
    };
    let asked = asked.to_string();
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
                in_site: false,
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

/// Why a DC's name gave no address, as a sentence.
fn address_words(e: &hickory_resolver::net::NetError, host: &str, asked: &str) -> String {
    use hickory_resolver::net::{DnsError, NetError};
    use hickory_resolver::proto::op::ResponseCode;
    match e {
        NetError::Dns(DnsError::NoRecordsFound(nr))
            if nr.response_code == ResponseCode::NoError =>
        {
            format!("{asked} has no address record (A or AAAA) for {host}")
        }
        NetError::Dns(DnsError::NoRecordsFound(nr))
            if nr.response_code == ResponseCode::NXDomain =>
        {
            format!("{asked} does not know {host}")
        }
        NetError::Timeout => format!("{asked} did not give {host}'s address in time"),
        other => format!("{host}'s address could not be looked up on {asked} ({other})"),
    }
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

    fn dc(host: &str, priority: u16, weight: u16) -> DcCandidate {
        DcCandidate {
            host: host.into(),
            port: 389,
            priority,
            weight,
            in_site: false,
        }
    }

    #[test]
    fn the_sites_dcs_come_first_in_dnss_order_and_the_rest_after() {
        // DNS's order for the domain: hq1, hq2 (priority 0), branch1, branch2 (priority 10).
        let all = vec![
            dc("hq1.example.com", 0, 100),
            dc("hq2.example.com", 0, 50),
            dc("branch1.example.com", 10, 100),
            dc("BRANCH2.example.com", 10, 50),
        ];
        // The branch site's records (in their own order, names in another case) and a DC only
        // the site lists.
        let site = vec![
            dc("branch2.example.com", 0, 100),
            dc("branch1.example.com", 0, 100),
            dc("branch3.example.com", 0, 100),
        ];
        let got: Vec<(String, bool)> = site_first(all.clone(), &site)
            .into_iter()
            .map(|d| (d.host, d.in_site))
            .collect();
        let want = [
            ("branch1.example.com", true),
            ("BRANCH2.example.com", true),
            ("branch3.example.com", true),
            ("hq1.example.com", false),
            ("hq2.example.com", false),
        ];
        assert_eq!(got, want.map(|(h, s)| (h.to_string(), s)).to_vec());
        // A site without DCs of its own changes nothing.
        assert_eq!(site_first(all.clone(), &[]), all);
    }

    #[test]
    fn only_a_dns_label_is_taken_for_a_site_name() {
        for ok in ["Default-First-Site-Name", "Branch_Oslo", "HQ1"] {
            assert!(is_site_name(ok), "{ok}");
        }
        for bad in [
            "",
            "a.b",
            "evil.example.org.",
            "x y",
            &"s".repeat(64),
            "\u{e9}t\u{e9}",
        ] {
            assert!(!is_site_name(bad), "{bad}");
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"))
    }

    #[test]
    fn a_dc_name_without_an_address_is_said_in_words_not_as_a_resolver_dump() {
        use hickory_resolver::net::{DnsError, NetError, NoRecords};
        use hickory_resolver::proto::op::{Query, ResponseCode};
        use hickory_resolver::proto::rr::{Name, RecordType};
        let query = Query::query(
            Name::from_ascii("dc1.example.com.").unwrap_or_default(),
            RecordType::AAAA,
        );
        let asked = "the DNS server 10.0.0.10";
        let cases = [
            (
                NetError::Dns(DnsError::NoRecordsFound(NoRecords::new(
                    query.clone(),
                    ResponseCode::NoError,
                ))),
                "the DNS server 10.0.0.10 has no address record (A or AAAA) for dc1.example.com",
            ),
            (
                NetError::Dns(DnsError::NoRecordsFound(NoRecords::new(
                    query,
                    ResponseCode::NXDomain,
                ))),
                "the DNS server 10.0.0.10 does not know dc1.example.com",
            ),
            (
                NetError::Timeout,
                "the DNS server 10.0.0.10 did not give dc1.example.com's address in time",
            ),
        ];
        for (e, want) in cases {
            let said = address_words(&e, "dc1.example.com", asked);
            assert_eq!(said, want);
            assert!(!said.contains("Query {"), "{said}");
        }
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
