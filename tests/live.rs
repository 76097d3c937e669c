//! Every AD check against real Samba AD DCs (see tests/support/testbed.rs): one test that makes
//! each check pass, and tests that make each fail or warn, plus the `check` CLI end to end.

mod support;

use ad_sync::preflight::{Report, Status, ids};
use support::testbed::{self, accounts};
use support::{Spec, bed, run_checks, setup_cli};

fn expect(report: &Report, id: &str, status: Status, words: &str) {
    let c = report
        .get(id)
        .unwrap_or_else(|| panic!("{id} not reported:\n{}", ad_sync::cli::render_text(report)));
    assert_eq!(
        c.status,
        status,
        "{id}: {}\n{}",
        c.summary,
        ad_sync::cli::render_text(report)
    );
    let text = format!("{} {} {}", c.summary, c.detail, c.fix);
    assert!(text.contains(words), "{id}: expected {words:?} in {text:?}");
    if status == Status::Fail || status == Status::Warn {
        assert!(!c.fix.is_empty(), "{id} {status:?} without a fix");
    }
}

const AD_IDS: [&str; 21] = [
    ids::DN_ROOT,
    ids::DN_SYNC_GROUP,
    ids::DC_RESOLVE,
    ids::DC_REACHABLE,
    ids::LDAP_TLS,
    ids::LDAP_FALLBACK,
    ids::DC_WRITABLE,
    ids::LDAP_BIND,
    ids::ACCOUNT_NOT_PRIVILEGED,
    ids::ACCOUNT_NAME,
    ids::ACCOUNT_ADMINCOUNT,
    ids::ACCOUNT_ENABLED,
    ids::ACCOUNT_PASSWORD_EXPIRY,
    ids::ROOT_DN_EXISTS,
    ids::ROOT_DN_DOMAIN_MATCHES,
    ids::ROOT_DN_DELEGATION,
    ids::SYNC_GROUP_EXISTS,
    ids::SYNC_GROUP_IS_SECURITY_GROUP,
    ids::SYNC_GROUP_NOT_PRIVILEGED,
    ids::DOMAIN_TIER0,
    ids::PASSWORD_POLICY,
];

#[test]
fn every_ad_check_passes_for_a_well_prepared_domain_over_one_connection() {
    let r = run_checks(&Spec::good());
    for id in AD_IDS {
        let c = r.get(id).unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(
            c.status,
            Status::Pass,
            "{id}: {}\n{}",
            c.summary,
            ad_sync::cli::render_text(&r)
        );
    }
    // Without a [cloud] section the cloud checks are skipped, saying why, never passed.
    for id in ids::CLOUD
        .into_iter()
        .filter(|id| *id != ids::CONNECT_KEY_FORMAT)
    {
        expect(&r, id, Status::Skip, "no [cloud] section");
    }
    expect(&r, ids::CONNECT_KEY_FORMAT, Status::Skip, "no connect key");
    assert_eq!(r.checks.len(), ids::ALL.len());
    assert_eq!(r.stats.connections, 1);
    // RootDSE, bind, domain policy, account, tokenGroups, root container, sync group, unbind.
    assert_eq!(r.stats.operations, 8);
    expect(&r, ids::ROOT_DN_DELEGATION, Status::Pass, "does not prove");
    expect(
        &r,
        ids::PASSWORD_POLICY,
        Status::Pass,
        "complexity required",
    );
    expect(
        &r,
        ids::ACCOUNT_PASSWORD_EXPIRY,
        Status::Pass,
        "never expires",
    );
}

#[test]
fn accepts_bare_and_upn_account_names_and_the_comma_form() {
    let mut s = Spec::good();
    s.username = accounts::GOOD.into();
    s.root_dn = "ou=Staff,dc=example,dc=com".into();
    let r = run_checks(&s);
    expect(&r, ids::LDAP_BIND, Status::Pass, "svc-sync@example.com");
    expect(&r, ids::DN_ROOT, Status::Pass, "upper-cased");
    expect(&r, ids::ROOT_DN_DELEGATION, Status::Pass, "can create");
    s.username = format!("{}@example.com", accounts::GOOD);
    expect(
        &run_checks(&s),
        ids::ACCOUNT_NOT_PRIVILEGED,
        Status::Pass,
        "not in any",
    );
}

#[test]
fn non_ascii_and_escaped_comma_container_is_found_and_delegated() {
    let mut s = Spec::good();
    s.root_dn = "OU=Bénéficiaires\\, Zürich;DC=example;DC=com".into();
    let r = run_checks(&s);
    expect(&r, ids::DN_ROOT, Status::Pass, "Bénéficiaires\\, Zürich");
    expect(&r, ids::ROOT_DN_EXISTS, Status::Pass, "exists");
    expect(
        &r,
        ids::ROOT_DN_DELEGATION,
        Status::Pass,
        "can create users and groups",
    );
}

#[test]
fn malformed_dns_fail_with_position_and_skip_what_depends_on_them() {
    let mut s = Spec::good();
    s.root_dn = "OU=Staff; DC=example;DC=com".into();
    s.sync_group_dn = Some("CN=Cloud Groups;O=Staff;DC=example;DC=com".into());
    let r = run_checks(&s);
    expect(&r, ids::DN_ROOT, Status::Fail, "at character 10");
    expect(&r, ids::DN_SYNC_GROUP, Status::Fail, "`O`");
    expect(&r, ids::ROOT_DN_EXISTS, Status::Skip, "not valid");
    expect(&r, ids::SYNC_GROUP_EXISTS, Status::Skip, "not valid");
    // The account checks do not depend on the DNs and still run.
    expect(&r, ids::LDAP_BIND, Status::Pass, "logged on");
}

#[test]
fn unresolvable_dc_name_fails_dc_resolve() {
    let mut s = Spec::good();
    s.dc_host = Some("no-such-dc.invalid".into());
    let r = run_checks(&s);
    expect(&r, ids::DC_RESOLVE, Status::Fail, "does not resolve");
    expect(&r, ids::DC_REACHABLE, Status::Skip, "does not resolve");
    expect(&r, ids::LDAP_BIND, Status::Skip, "no connection");
}

#[test]
fn dc_that_refuses_connections_fails_dc_reachable() {
    let mut s = Spec::good();
    s.dc_host = Some(testbed::DEAD_HOST.into());
    let r = run_checks(&s);
    expect(&r, ids::DC_RESOLVE, Status::Pass, "127.0.0.3");
    expect(&r, ids::DC_REACHABLE, Status::Fail, "refused");
    expect(&r, ids::LDAP_TLS, Status::Skip, "no TCP connection");
    expect(&r, ids::LDAP_FALLBACK, Status::Skip, "not allowed");
    // Allowed, the fallback is tried and fails too.
    s.fallback = true;
    let r = run_checks(&s);
    expect(&r, ids::LDAP_FALLBACK, Status::Fail, "failed too");
}

#[test]
fn untrusted_certificate_fails_with_its_details() {
    let mut s = Spec::good();
    s.ca_file = None;
    let r = run_checks(&s);
    expect(
        &r,
        ids::LDAP_TLS,
        Status::Fail,
        "not issued by a CA this machine trusts",
    );
    let tls = r
        .get(ids::LDAP_TLS)
        .map(|c| c.detail.clone())
        .unwrap_or_default();
    for fact in [
        "subject:",
        "issuer:",
        "names: DC1.example.com",
        "valid:",
        "SHA-256:",
    ] {
        assert!(tls.contains(fact), "missing {fact:?} in {tls}");
    }
    expect(&r, ids::LDAP_FALLBACK, Status::Skip, "not allowed");
    expect(&r, ids::LDAP_BIND, Status::Skip, "no connection");
}

#[test]
fn a_ca_file_exported_as_der_or_pkcs7_is_trusted_and_the_check_names_its_format() {
    let (der, p7b) = support::dc_ca_as_windows_exports_it();
    for (file, words) in [
        (der, "dc-ca.cer (DER, 1 certificate)"),
        (p7b, "dc-ca.p7b (a PKCS#7 bundle (DER), 1 certificate)"),
    ] {
        let mut s = Spec::good();
        s.ca_file = Some(file);
        let r = run_checks(&s);
        expect(&r, ids::LDAP_TLS, Status::Pass, words);
        expect(&r, ids::LDAP_BIND, Status::Pass, "logged on");
    }
    // A file that is no certificate at all says which formats it takes.
    let mut s = Spec::good();
    s.ca_file = Some(s.write().with_file_name("svc.pw"));
    let r = run_checks(&s);
    expect(&r, ids::LDAP_TLS, Status::Fail, "PKCS#7");
}

#[test]
fn certificate_for_another_name_fails_name_check() {
    let mut s = Spec::good();
    s.dc_host = Some("localhost".into());
    let r = run_checks(&s);
    expect(&r, ids::LDAP_TLS, Status::Fail, "not for `localhost`");
}

#[test]
fn starttls_works_on_port_389() {
    let mut s = Spec::good();
    s.security = "starttls";
    let r = run_checks(&s);
    expect(&r, ids::DC_REACHABLE, Status::Pass, "port 389");
    expect(&r, ids::LDAP_TLS, Status::Pass, "StartTLS");
    expect(&r, ids::LDAP_BIND, Status::Pass, "logged on");
}

#[test]
fn server_that_accepts_and_never_answers_times_out() {
    // A real listener that accepts TCP and then says nothing, like a hung DC or a black hole.
    let listener = std::net::TcpListener::bind("127.0.0.5:0").unwrap_or_else(|e| panic!("{e}"));
    let port = listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        for _ in 0..3 {
            match listener.accept() {
                Ok((s, _)) => open.push(s),
                Err(_) => break,
            }
        }
        std::thread::sleep(std::time::Duration::from_secs(3));
    });
    let mut s = Spec::good();
    s.dc_host = Some("127.0.0.5".into());
    s.port = Some(port);
    let mut answers = s.answers();
    answers.ldap.timeout_seconds = 1;
    let started = std::time::Instant::now();
    let r = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
        .block_on(ad_sync::preflight::run(&answers));
    expect(&r, ids::DC_REACHABLE, Status::Pass, "accepts connections");
    expect(
        &r,
        ids::LDAP_TLS,
        Status::Fail,
        "did not complete the LDAPS handshake",
    );
    expect(&r, ids::LDAP_BIND, Status::Skip, "no connection");
    // Bounded by the timeout, not by the server: a generous ceiling, not a benchmark.
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    drop(held);
}

#[test]
fn unusable_ca_file_fails_ldap_tls_naming_the_field() {
    let mut s = Spec::good();
    s.ca_file = Some("/nonexistent/ca.pem".into());
    let r = run_checks(&s);
    expect(
        &r,
        ids::LDAP_TLS,
        Status::Fail,
        "[ldap] ca_file cannot be used",
    );
}

/// Answers for dc2 (its LDAPS certificate has expired; it accepts a simple bind over plain
/// LDAP), its CA trusted, its default containers.
fn dc2_spec() -> Spec {
    let mut s = Spec::good();
    s.dc_host = Some(testbed::DC2_HOST.into());
    s.ca_file = Some(bed().dc2.ca_file.clone());
    s.root_dn = "CN=Users;DC=example;DC=com".into();
    s.sync_group_dn = Some("CN=Cloud Groups;CN=Users;DC=example;DC=com".into());
    s
}

#[test]
fn expired_certificate_with_fallback_allowed_still_never_downgrades() {
    let mut s = dc2_spec();
    // Not allowed: the expired certificate is a failure and plain LDAP is never tried.
    let r = run_checks(&s);
    expect(&r, ids::LDAP_TLS, Status::Fail, "expired on 2025-01-01");
    expect(&r, ids::LDAP_FALLBACK, Status::Skip, "not allowed");
    // Allowed: still never tried, since the secure port answered and TLS failed.
    s.fallback = true;
    let r = run_checks(&s);
    expect(&r, ids::LDAP_TLS, Status::Fail, "expired");
    expect(&r, ids::LDAP_FALLBACK, Status::Skip, "tries nothing else");
    expect(&r, ids::LDAP_BIND, Status::Skip, "no connection");
    // The LDAPS attempt and the read of its certificate: no plain connection.
    assert_eq!(r.stats.connections, 2);
}

#[test]
fn a_dc_without_ldaps_with_fallback_allowed_uses_verified_starttls_never_plain_ldap() {
    // A DC with no LDAPS listener refuses the secure port outright: only then is the fallback
    // tried, and it is StartTLS on 389 with the certificate verified (1636 stands for dc1's
    // missing LDAPS).
    let mut s = Spec::good();
    s.port = Some(1636);
    let r = run_checks(&s);
    expect(&r, ids::DC_REACHABLE, Status::Fail, "refused");
    expect(&r, ids::LDAP_FALLBACK, Status::Skip, "not allowed");
    s.fallback = true;
    let r = run_checks(&s);
    expect(
        &r,
        ids::DC_REACHABLE,
        Status::Warn,
        "StartTLS on port 389 answered",
    );
    expect(
        &r,
        ids::LDAP_FALLBACK,
        Status::Warn,
        "StartTLS on port 389 is used",
    );
    expect(&r, ids::LDAP_BIND, Status::Pass, "over TLS");
    // The refused LDAPS attempt opens nothing; the StartTLS session is the one connection.
    assert_eq!(r.stats.connections, 1);
}

#[test]
fn a_dc_without_ldaps_whose_starttls_fails_gets_no_bind_at_all() {
    // dc2 without LDAPS (1636), fallback allowed: its 389 answers, but its certificate is
    // expired, so StartTLS fails; nothing is bound, and nothing is sent in clear text.
    let mut s = dc2_spec();
    s.port = Some(1636);
    s.fallback = true;
    let r = run_checks(&s);
    expect(
        &r,
        ids::LDAP_FALLBACK,
        Status::Fail,
        "never logs on over plain LDAP",
    );
    expect(&r, ids::LDAP_BIND, Status::Skip, "no connection");
}

#[test]
fn a_forged_certificate_with_fallback_allowed_never_produces_a_plain_bind() {
    // Someone in the path answers LDAPS with a certificate of their own and listens on 389:
    // with the fallback allowed, nothing (no bind, no connection) may reach their 389.
    let fake = support::forged::FakeDc::start("127.0.0.4");
    let mut s = Spec::good();
    s.dc_host = Some("127.0.0.4".into());
    s.fallback = true;
    let r = run_checks(&s);
    expect(
        &r,
        ids::LDAP_TLS,
        Status::Fail,
        "not issued by a CA this machine trusts",
    );
    expect(&r, ids::LDAP_FALLBACK, Status::Skip, "tries nothing else");
    expect(&r, ids::LDAP_BIND, Status::Skip, "no connection");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        fake.plain_received().is_empty(),
        "the plain listener received {:?}",
        String::from_utf8_lossy(&fake.plain_received())
    );
    assert!(
        fake.tls_connections() >= 1,
        "the forged LDAPS was never asked"
    );
}

/// A second check a bind failure also decides.
type Also = Option<(&'static str, Status)>;

#[test]
fn bind_failures_are_decoded_into_words() {
    let mut typo = Spec::good().user(accounts::TYPO);
    typo.password = "not-the-password".into();
    let cases: Vec<(Spec, &str, Also)> = vec![
        (typo, "52e", None),
        (
            Spec::good().user(accounts::DISABLED),
            "disabled (AD sub-code 533)",
            Some((ids::ACCOUNT_ENABLED, Status::Fail)),
        ),
        (
            Spec::good().user(accounts::EXPIRED),
            "expired (AD sub-code 701)",
            Some((ids::ACCOUNT_ENABLED, Status::Fail)),
        ),
        (
            Spec::good().user(accounts::LOCKED),
            "locked out (AD sub-code 775)",
            Some((ids::ACCOUNT_ENABLED, Status::Fail)),
        ),
        (
            Spec::good().user(accounts::MUST_CHANGE),
            "must change its password at next logon (AD sub-code 773)",
            Some((ids::ACCOUNT_PASSWORD_EXPIRY, Status::Fail)),
        ),
        (Spec::good().user(accounts::NO_HOURS), "at this time", None),
    ];
    for (spec, words, also) in cases {
        let r = run_checks(&spec);
        expect(&r, ids::LDAP_BIND, Status::Fail, words);
        if let Some((id, status)) = also {
            expect(&r, id, status, "");
        }
        expect(
            &r,
            ids::ROOT_DN_DELEGATION,
            Status::Skip,
            "could not log on",
        );
    }
}

#[test]
fn privileged_accounts_are_refused() {
    let r = run_checks(&Spec::good().user(accounts::DOMAIN_ADMIN));
    expect(
        &r,
        ids::ACCOUNT_NOT_PRIVILEGED,
        Status::Fail,
        "Domain Admins",
    );
    expect(&r, ids::ACCOUNT_ADMINCOUNT, Status::Fail, "adminCount=1");
    let r = run_checks(&Spec::good().user(accounts::NESTED_ADMIN));
    expect(
        &r,
        ids::ACCOUNT_NOT_PRIVILEGED,
        Status::Fail,
        "BUILTIN\\Administrators",
    );
    expect(&r, ids::ACCOUNT_ADMINCOUNT, Status::Pass, "not a protected");
}

#[test]
fn protected_account_fails_admincount() {
    let r = run_checks(&Spec::good().user(accounts::PROTECTED));
    expect(&r, ids::ACCOUNT_ADMINCOUNT, Status::Fail, "SDProp");
    expect(&r, ids::ACCOUNT_NOT_PRIVILEGED, Status::Pass, "not in any");
}

#[test]
fn reserved_account_name_is_refused() {
    let r = run_checks(&Spec::good().user(accounts::JUMPCLOUD));
    expect(&r, ids::ACCOUNT_NAME, Status::Fail, "reserved");
    expect(&r, ids::LDAP_BIND, Status::Pass, "logged on");
}

#[test]
fn expiring_password_warns() {
    let r = run_checks(&Spec::good().user(accounts::EXPIRING));
    expect(&r, ids::ACCOUNT_PASSWORD_EXPIRY, Status::Warn, "expires on");
    expect(&r, ids::ACCOUNT_ENABLED, Status::Pass, "enabled");
}

#[test]
fn root_container_problems_are_told_apart() {
    let mut s = Spec::good();
    s.root_dn = "OU=Nope;DC=example;DC=com".into();
    let r = run_checks(&s);
    expect(&r, ids::ROOT_DN_EXISTS, Status::Fail, "does not exist");
    expect(&r, ids::ROOT_DN_DELEGATION, Status::Skip, "does not exist");

    s.root_dn = "OU=Staff;DC=other;DC=com".into();
    let r = run_checks(&s);
    expect(
        &r,
        ids::ROOT_DN_DOMAIN_MATCHES,
        Status::Fail,
        "not in the DC's domain DC=example;DC=com",
    );
    expect(
        &r,
        ids::ROOT_DN_EXISTS,
        Status::Skip,
        "not in this DC's domain",
    );

    s.root_dn = "OU=Undelegated;DC=example;DC=com".into();
    let r = run_checks(&s);
    expect(&r, ids::ROOT_DN_EXISTS, Status::Pass, "exists");
    expect(
        &r,
        ids::ROOT_DN_DELEGATION,
        Status::Fail,
        "cannot create user or group",
    );

    s.root_dn = format!("CN={};CN=Users;DC=example;DC=com", accounts::GOOD);
    let r = run_checks(&s);
    expect(&r, ids::ROOT_DN_EXISTS, Status::Fail, "not a container");
}

#[test]
fn sync_group_must_exist_and_be_a_security_group() {
    let mut s = Spec::good();
    s.sync_group_dn = Some("CN=Nope;OU=Staff;DC=example;DC=com".into());
    let r = run_checks(&s);
    expect(&r, ids::SYNC_GROUP_EXISTS, Status::Fail, "does not exist");
    expect(
        &r,
        ids::SYNC_GROUP_IS_SECURITY_GROUP,
        Status::Skip,
        "does not exist",
    );
    s.sync_group_dn = Some("CN=Mailing List;OU=Staff;DC=example;DC=com".into());
    let r = run_checks(&s);
    expect(&r, ids::SYNC_GROUP_EXISTS, Status::Pass, "exists");
    expect(
        &r,
        ids::SYNC_GROUP_IS_SECURITY_GROUP,
        Status::Fail,
        "distribution group",
    );
    expect(
        &r,
        ids::SYNC_GROUP_NOT_PRIVILEGED,
        Status::Pass,
        "is in no privileged group",
    );
    s.sync_group_dn = None;
    let r = run_checks(&s);
    expect(&r, ids::DN_SYNC_GROUP, Status::Fail, "not set");
}

#[test]
fn a_privileged_sync_group_fails_check_nested_membership_included() {
    // The agent puts every cloud group in the sync group: Domain Admins there would make every
    // cloud user a domain administrator.
    let mut s = Spec::good();
    for (dn, why) in [
        (
            "CN=Domain Admins;CN=Users;DC=example;DC=com",
            "must not be used",
        ),
        // A security group nested in the built-in Administrators group.
        (
            "CN=Helpdesk Admins;CN=Users;DC=example;DC=com",
            "member of the privileged group CN=Administrators,CN=Builtin",
        ),
    ] {
        s.sync_group_dn = Some(dn.into());
        let r = run_checks(&s);
        expect(
            &r,
            ids::SYNC_GROUP_IS_SECURITY_GROUP,
            Status::Pass,
            "security group",
        );
        expect(&r, ids::SYNC_GROUP_NOT_PRIVILEGED, Status::Fail, why);
        let c = r
            .get(ids::SYNC_GROUP_NOT_PRIVILEGED)
            .unwrap_or_else(|| panic!("no result"));
        assert!(c.fix.contains("ordinary security group"), "{}", c.fix);
    }
}

// ---- the CLI, end to end ----

#[test]
fn check_cli_reports_the_destination_folder_when_the_answers_give_one() {
    // The wizard's Destination folder rule is the CLI's too.
    let path = Spec::good().write();
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    text.push_str("\n[install]\ndir = '/etc'\n");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    let out = setup_cli(&["check", "--answers", &path.to_string_lossy(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    let folder = v["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == ids::INSTALL_FOLDER).cloned())
        .unwrap_or_else(|| panic!("no install.folder in {v}"));
    assert_eq!(folder["status"], "fail", "{folder}");
    assert!(
        folder["summary"]
            .as_str()
            .is_some_and(|s| s.contains("system folder")),
        "{folder}"
    );
}

#[test]
fn check_cli_exit_codes_and_json_shape() {
    let good = Spec::good().write();
    let out = setup_cli(&["check", "--answers", &good.to_string_lossy(), "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    let checks = v["checks"].as_array().cloned().unwrap_or_default();
    assert_eq!(checks.len(), ids::ALL.len());
    for c in &checks {
        for key in ["id", "status", "summary", "detail", "fix"] {
            assert!(c.get(key).is_some(), "{key} missing in {c}");
        }
    }

    let bad = Spec::good().user(accounts::DOMAIN_ADMIN).write();
    let out = setup_cli(&["check", "--answers", &bad.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAIL  account.not_privileged"), "{text}");
    assert!(text.contains("fix: Use a dedicated"), "{text}");

    let out = setup_cli(&["check", "--answers", "/nonexistent/answers.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("answers file /nonexistent/answers.toml: does not exist")
    );
}

#[test]
fn connect_key_format_is_checked_offline() {
    let key = ad_sync::connect_key::ConnectKey::generate().unwrap_or_else(|e| panic!("{e}"));
    let text = key.secret().expose().to_string();
    let mut s = Spec::good();
    s.connect_key = Some(format!("{}\n{}\n", &text[..20], &text[20..]));
    let r = run_checks(&s);
    expect(
        &r,
        ids::CONNECT_KEY_FORMAT,
        Status::Pass,
        "checksum matches",
    );
    expect(&r, ids::CONNECT_KEY_VALID, Status::Skip, "no [cloud] url");
    // One mistyped character is caught before any network call.
    let swapped = if text.ends_with('Z') { 'Y' } else { 'Z' };
    s.connect_key = Some(format!("{}{swapped}", &text[..text.len() - 1]));
    let r = run_checks(&s);
    expect(&r, ids::CONNECT_KEY_FORMAT, Status::Fail, "mistyped");
    s.connect_key = Some(text[..30].to_string());
    let r = run_checks(&s);
    expect(&r, ids::CONNECT_KEY_FORMAT, Status::Fail, "truncated");
}

#[test]
fn no_password_appears_in_any_output() {
    let mut wrong = Spec::good().user(accounts::TYPO);
    wrong.password = "Wr0ng!Distinct-Typo-5150".into();
    let mut plain = Spec::good();
    plain.port = Some(1636);
    plain.fallback = true;
    let mut with_key = Spec::good();
    let key = ad_sync::connect_key::ConnectKey::generate().unwrap_or_else(|e| panic!("{e}"));
    with_key.connect_key = Some(key.secret().expose().to_string());
    let mut bad_key = Spec::good();
    bad_key.connect_key = Some(format!("{}X", key.secret().expose()));
    let specs = [
        Spec::good(),
        wrong,
        plain,
        Spec::good().user(accounts::LOCKED),
        with_key,
        bad_key,
    ];
    for spec in specs {
        let path = spec.write();
        for json in [false, true] {
            let mut args = vec!["check", "--answers"];
            let p = path.to_string_lossy().into_owned();
            args.push(&p);
            if json {
                args.push("--json");
            }
            let out = setup_cli(&args);
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!all.is_empty());
            assert!(
                !all.contains(&spec.password),
                "password leaked for {}: {all}",
                spec.username
            );
            assert!(!all.contains(testbed::ADMIN_PASSWORD));
            if let Some(k) = &spec.connect_key {
                // Nothing of the key beyond the redacted tail (last four characters).
                assert!(!all.contains(&k[5..25]), "connect key leaked: {all}");
            }
        }
    }
}

/// The answers of a well-prepared domain pointed at the reference cloud with a fresh key.
fn with_cloud(key_domain: &str) -> (Spec, String) {
    let cloud = support::cloud::shared();
    let key = cloud.issue_key(key_domain, None);
    let mut s = Spec::good();
    s.cloud_url = Some(cloud.url.clone());
    s.cloud_ca = Some(cloud.ca.clone());
    s.connect_key = Some(key.clone());
    (s, key)
}

/// With AD as the only source, the preview is of the first export from AD, never of writes to
/// AD: counted as the agent decides, against the real DC and the reference cloud. A user of the
/// cloud with an AD account's name is refused by name; a privileged account without adminCount
/// (`svc-nested`, in Administrators through a group: Samba never runs SDProp) and a protected
/// one are never sent, and say why.
#[test]
fn the_preview_of_ad_as_the_only_source_counts_the_first_export() {
    let (spec, _key) = with_cloud("DC=example;DC=com");
    let cloud = support::cloud::shared();
    // A cloud user named as an AD account in CN=Users (another test may have made it).
    let _ = cloud.admin(&[
        "user",
        "add",
        testbed::accounts::TYPO,
        "--given",
        "Cloud",
        "--surname",
        "Typo",
        "--domain",
        "DC=example,DC=com",
    ]);
    let path = spec.write();
    let base = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        &path,
        format!(
            "{base}\n[sync]\ndirection = \"ad-to-cloud\"\n[source]\ncontainers = [\"CN=Users;DC=example;DC=com\"]\n"
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let answers = ad_sync::answers::Answers::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let r = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
        .block_on(ad_sync::preflight::run(&answers));
    let p = r
        .get(ids::SYNC_PREVIEW)
        .cloned()
        .unwrap_or_else(|| panic!("no preview"));
    assert_eq!(p.status, Status::Warn, "{p:?}");
    assert!(
        p.summary.starts_with("first export from AD: users: ") && !p.summary.contains("first sync"),
        "{p:?}"
    );
    assert!(
        p.detail.contains(&format!(
            "users refused by the cloud: `{}`",
            testbed::accounts::TYPO
        )),
        "{p:?}"
    );
    for (who, why) in [
        (testbed::accounts::NESTED_ADMIN, "it is privileged:"),
        (testbed::accounts::DOMAIN_ADMIN, "it is"),
    ] {
        assert!(
            p.detail.contains(&format!("`{who}`: {why}")),
            "{who}: {p:?}"
        );
    }
}

#[test]
fn check_runs_every_check_against_the_dc_and_the_cloud_without_using_the_key() {
    let (spec, key) = with_cloud("DC=example;DC=com");
    let r = run_checks(&spec);
    assert_eq!(r.checks.len(), ids::ALL.len());
    for id in ids::ALL {
        let c = r.get(id).unwrap_or_else(|| panic!("{id} missing"));
        if id == ids::SYNC_PREVIEW {
            // Other tests leave users in the shared cloud that collide with AD accounts: the
            // preview then warns, and never fails.
            assert!(
                matches!(c.status, Status::Pass | Status::Warn)
                    && c.summary.starts_with("first sync: users: "),
                "{id}: {:?} {}",
                c.status,
                c.summary
            );
            continue;
        }
        assert_eq!(
            c.status,
            Status::Pass,
            "{id}: {}\n{}",
            c.summary,
            ad_sync::cli::render_text(&r)
        );
    }
    expect(
        &r,
        ids::CONNECT_KEY_DOMAIN_MATCHES,
        Status::Pass,
        "DC=example,DC=com",
    );
    expect(&r, ids::CLOUD_TLS, Status::Pass, "trusted");
    // Checking twice: the key is still unused (check never consumes it).
    let r = run_checks(&spec);
    expect(&r, ids::CONNECT_KEY_VALID, Status::Pass, "unused");
    // And through the binary, as an admin runs it.
    let path = spec.write();
    let out = setup_cli(&["check", "--answers", &path.to_string_lossy(), "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !all.contains(&key[5..30]),
        "connect key in check output: {all}"
    );
}

#[test]
fn check_fails_a_key_for_another_domain_a_used_key_and_an_untrusted_cloud() {
    let cloud = support::cloud::shared();
    // Issued for another domain instance: a usable key, but not for this domain.
    let (spec, _) = with_cloud("DC=other,DC=com");
    let r = run_checks(&spec);
    expect(&r, ids::CONNECT_KEY_VALID, Status::Pass, "unused");
    expect(
        &r,
        ids::CONNECT_KEY_DOMAIN_MATCHES,
        Status::Fail,
        "DC=other,DC=com",
    );
    let c = r
        .get(ids::CONNECT_KEY_DOMAIN_MATCHES)
        .unwrap_or_else(|| panic!("missing"));
    assert!(
        c.fix.contains("key issue --domain \"DC=example,DC=com\""),
        "{}",
        c.fix
    );

    // Used: enrolled by another agent.
    let (spec, key) = with_cloud("DC=example,DC=com");
    cloud.use_up(&key, "DC=example,DC=com");
    let r = run_checks(&spec);
    expect(&r, ids::CONNECT_KEY_VALID, Status::Fail, "already used");

    // Untrusted: no CA file; the report shows the certificate.
    let (mut spec, _) = with_cloud("DC=example,DC=com");
    spec.cloud_ca = None;
    let r = run_checks(&spec);
    expect(&r, ids::CLOUD_REACHABLE, Status::Pass, "reached");
    expect(
        &r,
        ids::CLOUD_TLS,
        Status::Fail,
        "not signed by a certificate authority",
    );
    let c = r.get(ids::CLOUD_TLS).unwrap_or_else(|| panic!("missing"));
    assert!(
        c.detail.contains("ad-sync-cloud local CA") && c.detail.contains("SHA-256"),
        "{}",
        c.detail
    );
    // And the TLS library's own words, behind the verdict (OpenSSL's reason here).
    assert!(
        c.detail.contains("the TLS library said:")
            && c.detail
                .to_ascii_lowercase()
                .contains("certificate verify failed"),
        "{}",
        c.detail
    );
    expect(&r, ids::CONNECT_KEY_VALID, Status::Skip, "cloud.tls");
    expect(&r, ids::CONNECT_KEY_FORMAT, Status::Pass, "well-formed");

    // Nothing listening: unreachable, and the rest say why they did not run.
    let (mut spec, _) = with_cloud("DC=example,DC=com");
    spec.cloud_url = Some("https://127.0.0.1:9".into());
    let r = run_checks(&spec);
    expect(&r, ids::CLOUD_REACHABLE, Status::Fail, "refused");
    expect(&r, ids::CLOUD_TLS, Status::Skip, "not reachable");
    // The AD checks are unaffected.
    expect(&r, ids::LDAP_BIND, Status::Pass, "");
}

/// The wizard's directory pickers read the test domain as the service account: one level at a
/// time, cut at a limit with `more`, filtered by name on the server, groups that cannot be the
/// sync group saying why; a wrong password reads as the bind check says it.
#[test]
fn the_directory_pickers_read_one_level_as_the_service_account() {
    use ad_sync::directory::browse::{Kind, Offer};
    use ad_sync::preflight::browse::level;
    // The test bed starts outside this test's runtime (its setup runs one of its own).
    let _ = bed();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    // Six OUs of its own under a new OU, so a limit of 4 cuts the list.
    let parent = "OU=Picker Test,DC=example,DC=com";
    rt.block_on(async {
        let mut l = bed().dc1.admin().await.unwrap_or_else(|e| panic!("{e}"));
        for dn in std::iter::once(parent.to_string())
            .chain((1..=6).map(|i| format!("OU=Branch {i},{parent}")))
        {
            let attrs = vec![(
                "objectClass",
                std::collections::HashSet::from(["top", "organizationalUnit"]),
            )];
            let r = l.add(&dn, attrs).await.and_then(|r| r.success());
            assert!(
                r.is_ok() || format!("{r:?}").contains("rc: 68"),
                "{dn}: {r:?}"
            );
        }
    });
    let answers = Spec::good().answers();

    // The domain's first level: naming context found, advanced objects hidden, names unescaped.
    let top = rt
        .block_on(level(&answers, None, Offer::Containers, "", 2000))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(top.base, testbed::BASE);
    let names: Vec<&str> = top.nodes.iter().map(|n| n.name.as_str()).collect();
    for expected in ["Staff", "Users", "Picker Test", "Bénéficiaires, Zürich"] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    for hidden in ["System", "LostAndFound", "Program Data"] {
        assert!(!names.contains(&hidden), "{hidden} is offered: {names:?}");
    }
    assert!(!top.more);
    assert!(top.nodes.iter().all(|n| n.unpickable.is_none()));

    // Cut at the limit, then narrowed by name on the server.
    let cut = rt
        .block_on(level(&answers, Some(parent), Offer::Containers, "", 4))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cut.nodes.len(), 4, "{cut:?}");
    assert!(cut.more);
    let all = rt
        .block_on(level(&answers, Some(parent), Offer::Containers, "", 2000))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all.nodes.len(), 6);
    assert!(!all.more);
    let one = rt
        .block_on(level(
            &answers,
            Some(parent),
            Offer::Containers,
            "ch 5",
            2000,
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        one.nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>(),
        ["Branch 5"]
    );
    // A filter full of LDAP's special characters is a name, not a filter.
    let odd = rt
        .block_on(level(
            &answers,
            Some(parent),
            Offer::Containers,
            "*)(|(",
            2000,
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(odd.nodes.is_empty(), "{odd:?}");

    // What a level under `base` (named like `name`) offers, node by node: (name, kind, why not).
    let read = |base: &str, offer: Offer, name: &str| {
        let l = rt
            .block_on(level(&answers, Some(base), offer, name, 2000))
            .unwrap_or_else(|e| panic!("{e}"));
        l.nodes
            .into_iter()
            .map(|n| (n.name, n.kind, n.unpickable))
            .collect::<Vec<_>>()
    };
    let why = |nodes: &[(String, Kind, Option<String>)], name: &str| {
        nodes
            .iter()
            .find(|n| n.0 == name)
            .unwrap_or_else(|| panic!("{name} missing from {nodes:?}"))
            .2
            .clone()
            .unwrap_or_default()
    };
    // The sync group's picker: the security group can be chosen, the distribution group not.
    let groups = read(testbed::OU_STAFF, Offer::Groups, "");
    assert!(
        groups
            .iter()
            .any(|n| n.0 == "Cloud Groups" && n.1 == Kind::Group { security: true })
    );
    assert_eq!(why(&groups, "Cloud Groups"), "");
    assert!(why(&groups, "Mailing List").contains("distribution group"));
    // Domain Users is a built-in group of the domain: listed under CN=Users, never pickable.
    let users = "CN=Users,DC=example,DC=com";
    let builtin = read(users, Offer::Groups, "Domain Users");
    assert!(why(&builtin, "Domain Users").contains("built-in"));
    // The scope's group picker (AD as a source): a built-in group only selects its members,
    // so it can be chosen there; a distribution group still cannot.
    let scope = read(users, Offer::ScopeGroups, "Domain Users");
    assert_eq!(why(&scope, "Domain Users"), "");
    let scope = read(testbed::OU_STAFF, Offer::ScopeGroups, "");
    assert_eq!(why(&scope, "Cloud Groups"), "");
    assert!(why(&scope, "Mailing List").contains("the scope takes security groups"));

    // Logged on as the service account: a wrong password reads as the bind check says it.
    let mut bad = Spec::good().user(accounts::TYPO);
    bad.password = "not-the-password".into();
    let e = rt
        .block_on(level(&bad.answers(), None, Offer::Containers, "", 10))
        .err()
        .unwrap_or_default();
    assert!(e.contains("the user name or password is wrong"), "{e}");
    assert!(!e.contains("not-the-password"), "{e}");
}

/// DNS SRV discovery against the test domain's own DNS server (Samba's internal DNS on dc1's
/// address, asked directly: the machine's resolver is not touched), and its failures in words.
#[test]
fn discovery_finds_the_test_dc_in_the_domains_dns() {
    use ad_sync::directory::discover::domain_controllers;
    let _ = bed();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let server = Some(
        testbed::DNS_SERVER
            .parse()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let t = std::time::Duration::from_secs(3);
    let found = rt
        .block_on(domain_controllers("example.com", server, t))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found.dcs.len(), 1, "{found:?}");
    assert_eq!(found.dcs[0].host, testbed::DC1_HOST);
    assert_eq!(found.dcs[0].port, 389);
    // The site, as dc1 answered the LDAP ping (UDP 389): the test domain's one site, whose
    // records list dc1, so it is marked as in this server's site.
    assert_eq!(
        found.site.as_deref(),
        Some("Default-First-Site-Name"),
        "{found:?}"
    );
    assert!(
        found.dcs[0].in_site && found.site_note.is_none(),
        "{found:?}"
    );
    // The same with a trailing dot and in capitals, as people type it.
    let again = rt
        .block_on(domain_controllers("EXAMPLE.COM.", server, t))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, found);
    // A name inside the domain with no DC records, and a domain this DNS does not serve.
    let none = rt
        .block_on(domain_controllers("sub.example.com", server, t))
        .err()
        .unwrap_or_default();
    assert!(
        none.contains("_ldap._tcp.dc._msdcs.sub.example.com") && !none.contains("Query {"),
        "{none}"
    );
    let other = rt
        .block_on(domain_controllers("nowhere.example.org", server, t))
        .err()
        .unwrap_or_default();
    assert!(
        other.contains("the DNS server 127.0.0.1") && !other.contains("Query {"),
        "{other}"
    );
    eprintln!("discovery: sub.example.com -> {none}\ndiscovery: nowhere.example.org -> {other}");
}

/// `browse`: the pickers' read on the command line, as the service account, over the checks'
/// connection; what cannot be the sync group says why; a bad `--under` names the option.
#[test]
fn browse_lists_one_level_as_the_service_account_and_says_what_cannot_be_chosen() {
    let answers = Spec::good().write();
    let a = answers.to_string_lossy();
    // One level under `under` as JSON, with `extra` options; it must be read.
    let listed = |under: &str, extra: &[&str]| {
        let mut args = vec!["browse", "--answers", &a, "--under", under, "--json"];
        args.extend_from_slice(extra);
        let out = setup_cli(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            support::report::text(&out)
        );
        support::report::json(&out)
    };
    let v = listed("OU=Staff;DC=example;DC=com", &["--groups"]);
    assert_eq!(v["base"], testbed::OU_STAFF);
    let child = |name: &str| {
        v["children"]
            .as_array()
            .and_then(|c| c.iter().find(|n| n["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {v:#}"))
    };
    let security = child("Cloud Groups");
    assert_eq!(security["kind"], "security group");
    assert!(security["unpickable"].is_null(), "{security}");
    let distribution = child("Mailing List");
    assert_eq!(distribution["kind"], "distribution group");
    assert!(
        distribution["unpickable"]
            .as_str()
            .is_some_and(|why| !why.is_empty()),
        "{distribution}"
    );
    assert_eq!(v["more"], false);

    // Containers only by default, and the domain itself without --under.
    let out = setup_cli(&["browse", "--answers", &a]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("DC=example,DC=com\n"), "{text}");
    assert!(
        text.contains("OU=Staff,DC=example,DC=com  (organizational unit)"),
        "{text}"
    );
    assert!(!text.contains("Cloud Groups"), "{text}");
    assert!(!text.contains(testbed::SVC_PASSWORD));

    // AD as a source's scope groups, as the wizard's page offers them: a built-in group can
    // select users, so it can be chosen there (never as the sync group, above).
    let v = listed(
        "CN=Users,DC=example,DC=com",
        &["--scope-groups", "--name", "Domain Users"],
    );
    assert!(
        v["children"].as_array().is_some_and(|c| c
            .iter()
            .any(|n| n["name"] == "Domain Users" && n["unpickable"].is_null())),
        "{v:#}"
    );
    let out = setup_cli(&["browse", "--answers", &a, "--groups", "--scope-groups"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "the two offers exclude each other"
    );

    let out = setup_cli(&["browse", "--answers", &a, "--under", "OU=Staff,,DC=x"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--under `OU=Staff,,DC=x`"), "{err}");
}

/// AD as a source's two checks against the real DC, reported only when the direction has AD as
/// a source: the scope's containers exist and the DC counts the users it selects; every mapped
/// attribute is in AD's schema. A missing container and a misspelt attribute fail by name.
#[test]
fn ad_as_a_source_checks_its_scope_and_its_map_against_the_dc() {
    let path = Spec::good().write();
    let base = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    let checks = |extra: &str| -> Report {
        std::fs::write(&path, format!("{base}{extra}")).unwrap_or_else(|e| panic!("{e}"));
        let answers =
            ad_sync::answers::Answers::load(&path).unwrap_or_else(|e| panic!("{e}: {extra}"));
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
            .block_on(ad_sync::preflight::run_checks(&answers))
    };
    // The cloud is the source: neither is reported.
    let r = checks("");
    assert!(r.get(ids::SOURCE_SCOPE).is_none() && r.get(ids::MAPPING_ATTRIBUTES).is_none());

    let r = checks(
        "\n[sync]\ndirection = \"ad-to-cloud\"\n[source]\ncontainers = [\"CN=Users;DC=example;DC=com\"]\n",
    );
    expect(&r, ids::SOURCE_SCOPE, Status::Pass, "the scope selects");
    let scope = r
        .get(ids::SOURCE_SCOPE)
        .map(|c| c.summary.clone())
        .unwrap_or_default();
    let n: usize = scope
        .split_whitespace()
        .find_map(|w| w.replace(',', "").parse().ok())
        .unwrap_or(0);
    assert!(n > 0, "{scope}");
    expect(
        &r,
        ids::MAPPING_ATTRIBUTES,
        Status::Pass,
        "mapped attributes exist",
    );
    expect(&r, ids::DN_SYNC_GROUP, Status::Pass, "is a valid DN");
    // Samba gives the service account DirSync (object security: no replication right).
    expect(&r, ids::SOURCE_CHANGES, Status::Pass, "read with DirSync");
    let r_usn = checks(
        "\n[sync]\ndirection = \"ad-to-cloud\"\n[source]\ncontainers = [\"CN=Users;DC=example;DC=com\"]\nchange_detection = \"usn\"\n",
    );
    expect(
        &r_usn,
        ids::SOURCE_CHANGES,
        Status::Pass,
        "read by uSNChanged, as [source] change_detection asks",
    );
    // As on a Windows domain by default, the service account cannot list Deleted Objects:
    // deletions would wait for the daily reconciliation, and the check says how to grant it.
    // (No other test of this testbed grants it.)
    let deletions = r
        .get(ids::SOURCE_DELETIONS)
        .cloned()
        .unwrap_or_else(|| panic!("no {}", ids::SOURCE_DELETIONS));
    assert_eq!(deletions.status, Status::Warn, "{deletions:?}");
    assert!(
        deletions
            .fix
            .contains("dsacls \"CN=Deleted Objects,DC=example,DC=com\" /G")
            && deletions.fix.contains(":LCRP"),
        "{deletions:?}"
    );
    let bed = support::bed();
    // Something deleted, so that there is a tombstone to list.
    support::cloud::block_on(async {
        let mut l = bed.dc1.admin().await.unwrap_or_else(|e| panic!("{e}"));
        let dn = testbed::add_user(&mut l, "CN=Users,DC=example,DC=com", "src-deleted", "514")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        l.delete(&dn)
            .await
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = l.unbind().await;
    });
    bed.dc1
        .add_ace_to_deleted(
            "CN=Deleted Objects,DC=example,DC=com",
            &format!("(A;;LCRP;;;{})", bed.good_sid),
        )
        .unwrap_or_else(|e| panic!("grant LCRP on Deleted Objects: {e}"));
    let r = checks(
        "\n[sync]\ndirection = \"ad-to-cloud\"\n[source]\ncontainers = [\"CN=Users;DC=example;DC=com\"]\n",
    );
    expect(
        &r,
        ids::SOURCE_DELETIONS,
        Status::Pass,
        "deletions in AD reach the cloud with the next export",
    );

    // With AD as the only source nothing is written to AD: no sync group is asked for.
    let without_group: String = base
        .lines()
        .filter(|l| !l.starts_with("sync_group_dn"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(
        &path,
        format!("{without_group}\n[sync]\ndirection = \"ad-to-cloud\"\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let answers = ad_sync::answers::Answers::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let r = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
        .block_on(ad_sync::preflight::run_checks(&answers));
    expect(&r, ids::DN_SYNC_GROUP, Status::Skip, "none is needed");
    assert!(
        r.checks.iter().all(|c| c.status != Status::Fail),
        "{}",
        ad_sync::cli::render_text(&r)
    );

    let r = checks(
        "\n[sync]\ndirection = \"both\"\n[source]\ncontainers = [\"OU=Nowhere;DC=example;DC=com\"]\n[mapping.user]\ntitle = \"titel\"\n",
    );
    expect(
        &r,
        ids::SOURCE_SCOPE,
        Status::Fail,
        "OU=Nowhere,DC=example,DC=com does not exist",
    );
    expect(
        &r,
        ids::MAPPING_ATTRIBUTES,
        Status::Fail,
        "[mapping.user] title reads titel, which AD's schema does not have",
    );
}
