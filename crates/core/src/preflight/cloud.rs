//! The cloud checks: `cloud.reachable` (DNS and TCP, direct or through the proxy), `cloud.tls`
//! (the certificate is trusted and the agent API answers), `connect_key.format` (offline),
//! `connect_key.valid` (the cloud knows the key, unused and unexpired; the check never consumes
//! it) and `connect_key.domain_matches` (the key's domain instance is the answers' AD domain,
//! compared as DNs).

use super::{CheckResult, ids};
use crate::answers::Answers;
use crate::cloud::api::{KeyCheckResponse, KeyState};
use crate::cloud::client::{CloudClient, CloudError, CloudOptions};
use crate::connect_key::ConnectKey;
use crate::dn::Dn;

pub async fn run(answers: &Answers) -> Vec<CheckResult> {
    let mut out = vec![super::connect_key_format(answers)];
    if let Err(why) = network_checks(answers, &mut out).await {
        // Every cloud check not reported yet did not run; each says why.
        for id in ids::CLOUD {
            if !out.iter().any(|c| c.id == id) {
                out.push(CheckResult::skip(id, &why));
            }
        }
    }
    order(out)
}

/// The checks that ask the cloud, in order; `Err` says why the rest cannot run.
async fn network_checks(answers: &Answers, out: &mut Vec<CheckResult>) -> Result<(), String> {
    let cloud = answers
        .cloud
        .as_ref()
        .ok_or("the answers file has no [cloud] section")?;
    let url = cloud.url.as_deref().ok_or(
        "the answers file gives no [cloud] url; add the cloud's address, like https://cloud.example.com",
    )?;
    let opts = CloudOptions {
        url: url.to_string(),
        ca_file: cloud.ca_file.as_deref().map(|p| answers.path(p)),
        timeout: cloud.timeout(),
        // The route the installed service will take: `[cloud] proxy`, or directly.
        route: answers.cloud_route_from_answers(),
    };
    let client = CloudClient::new(&opts).map_err(|e| {
        let id = match e {
            CloudError::CaFile(_) => ids::CLOUD_TLS,
            _ => ids::CLOUD_REACHABLE,
        };
        out.push(CheckResult::fail(id, format!("[cloud] {e}"), "", e.fix()));
        format!("{id} failed")
    })?;

    // Reachable: DNS and TCP.
    let reach = client.reachable().await.map_err(|e| {
        out.push(CheckResult::fail(
            ids::CLOUD_REACHABLE,
            format!("cloud {url}: {e}"),
            "",
            format!("{}{}", e.fix(), session_proxy_hint(cloud)),
        ));
        "the cloud is not reachable (cloud.reachable)".to_string()
    })?;
    out.push(CheckResult::pass(
        ids::CLOUD_REACHABLE,
        match &reach.via_proxy {
            Some(p) => format!(
                "reached the proxy {p} ({}) for {}",
                reach.addr,
                client.host()
            ),
            None => format!("reached {} at {}", client.host(), reach.addr),
        },
        client.base_url().to_string(),
    ));

    // TLS and the API: GET /v1/health through the verifying client.
    let health = client.health().await.map_err(|e| {
        let mut detail = e.certificate().map(|c| c.describe()).unwrap_or_default();
        if let Some(words) = e.tls_library_words() {
            if !detail.is_empty() {
                detail.push('\n');
            }
            detail.push_str(&format!("the TLS library said: {words}"));
        }
        out.push(CheckResult::fail(
            ids::CLOUD_TLS,
            format!("cloud {url}: {e}"),
            detail,
            e.fix(),
        ));
        "the cloud's TLS or API check failed (cloud.tls)".to_string()
    })?;
    out.push(CheckResult::pass(
        ids::CLOUD_TLS,
        format!(
            "the cloud's certificate is trusted; agent API v{} (server {})",
            health.api, health.version
        ),
        client
            .ca_file()
            .map(|ca| format!("ca_file: {ca}"))
            .unwrap_or_default(),
    ));

    let key = answers
        .connect_key()
        .ok()
        .flatten()
        .and_then(|k| ConnectKey::parse(k.expose()).ok())
        .ok_or("there is no well-formed connect key to check (connect_key.format)")?;
    let ad_domain = Dn::parse(&answers.directory.root_user_dn)
        .ok()
        .and_then(|p| p.dn.domain_dn());
    let asked = ad_domain.as_ref().map(Dn::to_comma_form);
    let resp = client
        .check_key(&key, asked.as_deref())
        .await
        .map_err(|e| {
            out.push(CheckResult::fail(
                ids::CONNECT_KEY_VALID,
                format!(
                    "connect key {}: the cloud could not check it: {e}",
                    key.redacted()
                ),
                "",
                e.fix(),
            ));
            "the cloud did not say which domain the key is for".to_string()
        })?;
    out.push(key_valid(&key, &resp));
    out.push(domain_matches(&resp, ad_domain.as_ref()));
    Ok(())
}

fn order(mut checks: Vec<CheckResult>) -> Vec<CheckResult> {
    checks.sort_by_key(|c| ids::CLOUD.iter().position(|id| *id == c.id));
    checks
}

/// `connect_key.valid` from the cloud's answer. A key for another domain is still a usable key;
/// `connect_key.domain_matches` reports the mismatch.
pub fn key_valid(key: &ConnectKey, resp: &KeyCheckResponse) -> CheckResult {
    let name = key.redacted();
    let fix_new = "Issue a new connect key for this domain in the cloud (ad-sync-cloud key issue --domain ...) and give it in [cloud].";
    match resp.state {
        KeyState::Valid | KeyState::WrongDomain => CheckResult::pass(
            ids::CONNECT_KEY_VALID,
            format!(
                "connect key {name} is unused and valid until {}",
                resp.expires_at.as_deref().unwrap_or("(not given)")
            ),
            "checked without using it up; the install consumes it",
        ),
        KeyState::Used => CheckResult::fail(
            ids::CONNECT_KEY_VALID,
            format!("connect key {name}: {}", resp.message),
            resp.used_at
                .as_deref()
                .map(|t| format!("used at {t}"))
                .unwrap_or_default(),
            fix_new,
        ),
        KeyState::Expired | KeyState::Revoked => CheckResult::fail(
            ids::CONNECT_KEY_VALID,
            format!("connect key {name}: {}", resp.message),
            "",
            fix_new,
        ),
        KeyState::Unknown => CheckResult::fail(
            ids::CONNECT_KEY_VALID,
            format!("connect key {name}: {}", resp.message),
            "",
            "Check [cloud] url is the cloud that issued the key; otherwise issue a new key.",
        ),
        KeyState::Malformed => CheckResult::fail(
            ids::CONNECT_KEY_VALID,
            format!(
                "connect key {name}: the cloud refused its format: {}",
                resp.message
            ),
            "",
            fix_new,
        ),
    }
}

/// `connect_key.domain_matches`: the key's domain instance against the answers' AD domain.
pub fn domain_matches(resp: &KeyCheckResponse, ad_domain: Option<&Dn>) -> CheckResult {
    let Some(key_domain) = resp.domain.as_deref() else {
        return CheckResult::skip(
            ids::CONNECT_KEY_DOMAIN_MATCHES,
            "the cloud does not know the key, so it named no domain",
        );
    };
    let Some(ad) = ad_domain else {
        return CheckResult::skip(
            ids::CONNECT_KEY_DOMAIN_MATCHES,
            "the Root User container is not a valid DN (dn.root), so the AD domain is unknown",
        );
    };
    let same = Dn::parse(key_domain).is_ok_and(|k| k.dn.same_as(ad));
    if same {
        CheckResult::pass(
            ids::CONNECT_KEY_DOMAIN_MATCHES,
            format!("the key is for {key_domain}, this AD domain"),
            "",
        )
    } else {
        CheckResult::fail(
            ids::CONNECT_KEY_DOMAIN_MATCHES,
            format!(
                "the connect key is for domain {key_domain}, but this AD domain is {}",
                ad.to_comma_form()
            ),
            "A key works only for the domain instance it was issued for.",
            format!(
                "Issue a key for {} in the cloud (ad-sync-cloud key issue --domain \"{}\"), or check the Root User container.",
                ad.to_comma_form(),
                ad.to_comma_form()
            ),
        )
    }
}

/// When the cloud is to be reached directly but this session names a proxy: the checks (and the
/// service) do not use the session's proxy, so say how to make them.
fn session_proxy_hint(cloud: &crate::answers::Cloud) -> String {
    if cloud.proxy.is_some() {
        return String::new();
    }
    match crate::cloud::system_proxy::from_env(|n| std::env::var(n).ok()) {
        Some(f) => format!(
            " This session names the proxy {} ({}), which the checks and the installed service do not use: if the cloud is reached through it, set [cloud] proxy = \"{}\".",
            f.url, f.source, f.url
        ),
        None => String::new(),
    }
}
