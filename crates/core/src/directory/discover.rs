//! Finding a domain's controllers the way Windows does: the DNS SRV records
//! `_ldap._tcp.dc._msdcs.<domain>`, ordered by priority, then weight (highest first).

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DcCandidate {
    pub host: String,
    pub port: u16,
    pub priority: u16,
    pub weight: u16,
}

/// The DCs DNS names for `domain`; `Err` says in words why none could be listed.
pub async fn domain_controllers(
    domain: &str,
    timeout: Duration,
) -> Result<Vec<DcCandidate>, String> {
    use hickory_resolver::TokioResolver;
    use hickory_resolver::proto::rr::RData;

    let domain = domain.trim().trim_end_matches('.');
    if domain.is_empty() || !domain.contains('.') || domain.contains([' ', '/', '\\']) {
        return Err(format!(
            "`{domain}` is not a DNS domain name; give the AD domain, like example.com"
        ));
    }
    let mut builder = TokioResolver::builder_tokio()
        .map_err(|e| format!("this host's DNS settings cannot be read: {e}"))?;
    builder.options_mut().timeout = timeout;
    builder.options_mut().attempts = 1;
    let resolver = builder
        .build()
        .map_err(|e| format!("the DNS resolver cannot start: {e}"))?;
    let name = format!("_ldap._tcp.dc._msdcs.{domain}.");
    let lookup = tokio::time::timeout(timeout * 2, resolver.srv_lookup(name.as_str()))
        .await
        .map_err(|_| {
            format!(
                "DNS did not answer for {name} within {} s",
                timeout.as_secs() * 2
            )
        })?
        .map_err(|e| format!("DNS has no domain controllers for {domain} ({name}): {e}"))?;
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
        return Err(format!(
            "DNS lists no domain controllers for {domain} ({name})"
        ));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_that_is_not_a_domain_is_refused_before_dns_is_asked() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"));
        for bad in ["", "example", "exa mple.com", "ldap://example.com"] {
            let r = rt.block_on(domain_controllers(bad, Duration::from_millis(200)));
            assert!(
                r.as_ref()
                    .is_err_and(|e| e.contains("is not a DNS domain name")),
                "{bad}: {r:?}"
            );
        }
    }
}
