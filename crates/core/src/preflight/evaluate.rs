//! The pure half of the AD checks: facts read from a domain controller in, `CheckResult`s out.
//! No I/O here, so recorded directory data (an RODC's RootDSE, say) can be fed straight in.

use super::CheckResult;
use super::ids::*;
use crate::directory::bind::BindFailure;
use crate::directory::cert::CertProblem;
use crate::directory::connect::{Connection, Fallback, ReachError, Security};
use crate::dn::{Dn, Parsed};
use crate::time_fmt::{filetime_to_unix, interval_days, unix_to_text};

// userAccountControl bits.
const UAC_ACCOUNTDISABLE: i64 = 0x2;
const UAC_LOCKOUT: i64 = 0x10;
const UAC_DONT_EXPIRE_PASSWORD: i64 = 0x10000;
const UAC_PASSWORD_EXPIRED: i64 = 0x800000;
// groupType bit for a security (not distribution) group.
const GROUP_TYPE_SECURITY: i64 = 0x8000_0000;
// pwdProperties bits.
const PWD_COMPLEX: i64 = 0x1;
const PWD_STORE_CLEARTEXT: i64 = 0x10;
/// RootDSE supportedCapabilities.
const CAP_ACTIVE_DIRECTORY: &str = "1.2.840.113556.1.4.800";
const CAP_PARTIAL_SECRETS_RODC: &str = "1.2.840.113556.1.4.1920";

/// Warn about a password or account that runs out within this many days.
const EXPIRY_WARN_DAYS: i64 = 30;

/// What a passed TLS check proved, revocation included: the stacks differ, and an administrator
/// whose DC certificate names no CRL should know it was not checked rather than assume it was.
const REVOCATION_NOTE: &str = if cfg!(windows) {
    "certificate verified against the system's trusted roots and the configured ca_file, host name checked; revocation checked by Windows from its cache (CRLs it already holds), and accepted when the status is unknown, as when the certificate names no CRL distribution point"
} else {
    "certificate verified against the system's trusted roots and the configured ca_file, host name checked; revocation is not checked on this platform (OpenSSL without CRLs)"
};

/// Parses a DN field; the result and, when valid, the DN.
pub fn dn_field(id: &'static str, label: &str, input: Option<&str>) -> (CheckResult, Option<Dn>) {
    let Some(input) = input else {
        return (
            CheckResult::fail(
                id,
                format!("{label} is not set"),
                "",
                format!(
                    "Add the {label} DN to the answers file, e.g. CN=Cloud Groups;CN=Users;DC=example;DC=com"
                ),
            ),
            None,
        );
    };
    match Dn::parse_container(input) {
        Ok(Parsed { dn, notes, .. }) => {
            let mut detail = format!(
                "comma form: {}\nsemicolon form: {}",
                dn.to_comma_form(),
                dn.to_semicolon_form()
            );
            for n in &notes {
                detail.push_str(&format!("\nnormalised: {n}"));
            }
            (
                CheckResult::pass(id, format!("{label} `{input}` is a valid DN"), detail),
                Some(dn),
            )
        }
        Err(e) => (
            CheckResult::fail(
                id,
                format!("{label} `{input}`: {}", e.message),
                format!("at character {}", e.position),
                "Correct the DN; write it like CN=Users;DC=example;DC=com (semicolons or commas, no spaces around them, CN/OU/DC in capitals).",
            ),
            None,
        ),
    }
}

/// dc.resolve, dc.reachable, ldap.tls and ldap.fallback from how the connection went.
pub fn connection(conn: &Connection) -> Vec<CheckResult> {
    let host = &conn.host;
    let port = conn.secure_port;
    let sec = conn.security.name();
    let mut out = Vec::new();
    match &conn.resolved {
        Ok(a) => {
            let list: Vec<String> = a.iter().map(|s| s.ip().to_string()).collect();
            out.push(CheckResult::pass(
                DC_RESOLVE,
                format!("{host} resolves to {}", list.join(", ")),
                "",
            ));
        }
        Err(e) => {
            out.push(CheckResult::fail(
                DC_RESOLVE,
                format!("the domain controller name `{host}` does not resolve: {e}"),
                "",
                "Check the spelling of dc_host and that this machine's DNS server is one of the domain's DNS servers (nslookup the name).",
            ));
            for id in [DC_REACHABLE, LDAP_TLS, LDAP_FALLBACK] {
                out.push(CheckResult::skip(id, format!("{host} does not resolve")));
            }
            return out;
        }
    }
    match (&conn.secure_reach, &conn.fallback) {
        (Some(Ok(addr)), _) => out.push(CheckResult::pass(
            DC_REACHABLE,
            format!("{host} accepts connections on port {port} ({addr})"),
            "",
        )),
        (Some(Err(e)), Fallback::Used { port: p }) => out.push(CheckResult::warn(
            DC_REACHABLE,
            format!("{host} port {port} ({sec}): {e}; StartTLS on port {p} answered"),
            "",
            reach_fix(e, port),
        )),
        (Some(Err(e)), _) => out.push(CheckResult::fail(
            DC_REACHABLE,
            format!("cannot connect to {host} port {port} ({sec}): {e}"),
            "",
            reach_fix(e, port),
        )),
        (None, _) => out.push(CheckResult::skip(DC_REACHABLE, "not tried")),
    }
    let fallback_used = matches!(conn.fallback, Fallback::Used { .. });
    match &conn.tls {
        Some(Ok(())) => out.push(CheckResult::pass(
            LDAP_TLS,
            format!(
                "{sec} to {host}:{port} is encrypted and the certificate is trusted for {host}"
            ),
            match &conn.ca_file {
                Some(ca) => format!("{REVOCATION_NOTE}\nca_file: {ca}"),
                None => REVOCATION_NOTE.to_string(),
            },
        )),
        Some(Err(f)) => {
            let (summary, fix) = tls_words(host, conn.security, f);
            let mut detail = format!("TLS library said: {}", f.message);
            if let Some(c) = &f.cert {
                detail.push_str("\nthe certificate the DC presented:\n");
                detail.push_str(&c.describe());
            }
            if fallback_used {
                out.push(CheckResult::warn(LDAP_TLS, summary, detail, fix));
            } else {
                out.push(CheckResult::fail(LDAP_TLS, summary, detail, fix));
            }
        }
        None => out.push(CheckResult::skip(
            LDAP_TLS,
            format!("no TCP connection to {host}:{port}"),
        )),
    }
    out.push(match &conn.fallback {
        Fallback::NotNeeded => CheckResult::pass(
            LDAP_FALLBACK,
            "no fallback: the connection is encrypted",
            "",
        ),
        Fallback::NotAllowed => CheckResult::skip(
            LDAP_FALLBACK,
            "the secure connection failed and the fallback is not allowed ([ldap] allow_insecure_fallback = false), so StartTLS on port 389 was not tried",
        ),
        Fallback::NotAfterTlsFailure => CheckResult::skip(
            LDAP_FALLBACK,
            format!("the fallback was not tried: port {port} answered, and after a certificate, handshake or timeout failure ad-sync tries nothing else (someone in the path could cause that failure); the fallback is used only when port {port} refuses connections outright"),
        ),
        Fallback::Used { port: p } => CheckResult::warn(
            LDAP_FALLBACK,
            format!("port {port} refused the connection, so StartTLS on port {p} is used (encrypted, the certificate verified as for LDAPS)"),
            "ad-sync never binds over plain LDAP: the fallback is StartTLS only, so the service account's password and passwords set in AD never cross the network in clear text.",
            format!("Make LDAPS work on port {port} (see ldap.tls) to stop depending on the fallback, or set [ldap] security = \"starttls\"."),
        ),
        Fallback::Failed { port: p, reason } => CheckResult::fail(
            LDAP_FALLBACK,
            format!("the fallback to StartTLS on port {p} failed too: {reason}"),
            "",
            "Make LDAPS or StartTLS work on the domain controller (see ldap.tls); ad-sync never logs on without TLS.",
        ),
    });
    out
}

fn reach_fix(e: &ReachError, port: u16) -> String {
    match e {
        ReachError::Refused => format!(
            "Nothing listens on port {port}: check the DC is running and, for LDAPS, that it has a certificate (AD only opens 636 for TLS with one), or choose StartTLS."
        ),
        ReachError::TimedOut(_) => format!(
            "Port {port} did not answer: check firewalls between this server and the DC allow TCP {port}."
        ),
        ReachError::Other(_) => format!("Check the network path to the DC on TCP {port}."),
    }
}

fn tls_words(
    host: &str,
    security: Security,
    f: &crate::directory::connect::TlsFailure,
) -> (String, String) {
    let sec = security.name();
    if let Some(e) = &f.ca_file_error {
        return (
            format!("[ldap] ca_file cannot be used: {e}"),
            "Point ca_file at the certificate of the CA that issued the DC's certificate (PEM, DER .cer/.crt or a PKCS#7 .p7b, as Windows exports it), or remove it to use the system's trusted roots.".into(),
        );
    }
    if f.starttls_refused {
        return (
            format!("{host} refused StartTLS: {}", f.message),
            "The DC has no usable certificate for TLS: enroll one (AD CS \"Domain Controller\" template) or choose another DC.".into(),
        );
    }
    if f.timed_out {
        return (
            format!("{host} did not complete the {sec} handshake: {}", f.message),
            "Check the port is an LDAP port (636 for LDAPS, 389 for StartTLS) and nothing in the path intercepts TLS.".into(),
        );
    }
    match (f.problem, &f.cert) {
        (Some(CertProblem::Expired), Some(c)) => (
            format!("the DC's certificate expired on {}", c.not_after),
            "Renew the domain controller's certificate (certlm.msc > Personal > Certificates, or AD CS auto-enrollment).".into(),
        ),
        (Some(CertProblem::NotYetValid), Some(c)) => (
            format!("the DC's certificate is not valid until {}", c.not_before),
            "Check the clocks of this server and the DC (w32tm /query /status).".into(),
        ),
        (Some(CertProblem::NameMismatch), Some(c)) => (
            format!(
                "the DC's certificate is for {}, not for `{host}`",
                c.names().join(", ")
            ),
            format!("Connect by a name the certificate carries (set dc_host to one of: {}), or reissue the certificate with `{host}` as a DNS name.", c.names().join(", ")),
        ),
        (Some(CertProblem::RevocationUnknown), _) => (
            format!("the DC's certificate chain is trusted, but whether it was revoked could not be checked ({})", f.message),
            "Publish a CRL for the CA that issued the DC's certificate and make the distribution point it names reachable from this server (certutil -verify -urlfetch shows which), or reissue the certificate from a template whose CA publishes one.".into(),
        ),
        (Some(CertProblem::IpAddressNotMatched), Some(c)) => (
            format!("the DC's certificate names `{host}` as an IP address, which this system's TLS library does not match (it matches DNS names)"),
            format!("Set dc_host to the DC's DNS name (the certificate names: {}).", c.names().join(", ")),
        ),
        (Some(CertProblem::Revoked), _) => (
            "the DC's certificate has been revoked by its CA".to_string(),
            "Enroll a new certificate for the domain controller (AD CS \"Domain Controller\" template, certlm.msc on the DC).".into(),
        ),
        (Some(CertProblem::Untrusted), Some(c)) => (
            format!("the DC's certificate is not issued by a CA this machine trusts (issuer: {})", c.issuer),
            "If the fingerprint below is the DC's, trust its CA: export the CA certificate (any format Windows offers: DER .cer, Base-64 .cer or a .p7b bundle) and set [ldap] ca_file to it (or add it to this machine's trusted roots).".into(),
        ),
        _ => (
            format!("{sec} handshake with {host} failed: {}", f.message),
            "Check that the DC has a valid certificate for TLS and that this machine trusts its CA ([ldap] ca_file).".into(),
        ),
    }
}

/// The parts of the RootDSE the checks use.
#[derive(Debug, Clone, Default)]
pub struct RootDse {
    pub default_naming_context: Option<String>,
    pub dns_host_name: Option<String>,
    pub supported_capabilities: Vec<String>,
    pub is_synchronized: Option<bool>,
}

pub fn dc_writable(host: &str, dse: &RootDse) -> CheckResult {
    let caps = &dse.supported_capabilities;
    if !caps.iter().any(|c| c == CAP_ACTIVE_DIRECTORY) {
        return CheckResult::fail(
            DC_WRITABLE,
            format!(
                "{host} is not an Active Directory domain controller (its RootDSE does not announce AD)"
            ),
            format!("supportedCapabilities: {}", caps.join(", ")),
            "Point dc_host at a domain controller of your AD domain.",
        );
    }
    if caps.iter().any(|c| c == CAP_PARTIAL_SECRETS_RODC) {
        return CheckResult::fail(
            DC_WRITABLE,
            format!(
                "{host} is a read-only domain controller (RODC); the agent must write users, groups and passwords"
            ),
            "",
            "Install on, or point dc_host at, a writable domain controller.",
        );
    }
    let name = dse.dns_host_name.as_deref().unwrap_or(host);
    if dse.is_synchronized == Some(false) {
        return CheckResult::warn(
            DC_WRITABLE,
            format!("{name} is writable but reports it has not finished its initial replication"),
            "RootDSE isSynchronized: FALSE",
            "Wait for replication to complete (repadmin /showrepl) or use another DC.",
        );
    }
    CheckResult::pass(
        DC_WRITABLE,
        format!("{name} is a writable AD domain controller"),
        "",
    )
}

pub fn bind_refused(account: &str, reason: BindFailure, server_text: &str) -> CheckResult {
    CheckResult::fail(
        LDAP_BIND,
        format!("cannot log on as `{account}`: {}", reason.words()),
        format!("server said: {server_text}"),
        reason.fix(),
    )
}

/// What a refused bind tells about the account checks it prevents.
pub fn from_bind_failure(reason: BindFailure) -> Vec<CheckResult> {
    let why = "the service account could not log on (see ldap.bind)";
    let enabled = match reason {
        BindFailure::Disabled | BindFailure::AccountExpired | BindFailure::LockedOut => {
            CheckResult::fail(ACCOUNT_ENABLED, reason.words(), "", reason.fix())
        }
        _ => CheckResult::skip(ACCOUNT_ENABLED, why),
    };
    let expiry = match reason {
        BindFailure::PasswordExpired | BindFailure::MustChangePassword => {
            CheckResult::fail(ACCOUNT_PASSWORD_EXPIRY, reason.words(), "", reason.fix())
        }
        _ => CheckResult::skip(ACCOUNT_PASSWORD_EXPIRY, why),
    };
    vec![enabled, expiry]
}

/// Groups whose members are too privileged to run a sync agent (and are protected by SDProp).
fn privileged_group(sid: &str) -> Option<&'static str> {
    match sid {
        "S-1-5-32-544" => return Some("BUILTIN\\Administrators"),
        "S-1-5-32-548" => return Some("BUILTIN\\Account Operators"),
        "S-1-5-32-549" => return Some("BUILTIN\\Server Operators"),
        "S-1-5-32-550" => return Some("BUILTIN\\Print Operators"),
        "S-1-5-32-551" => return Some("BUILTIN\\Backup Operators"),
        _ => {}
    }
    let (domain, rid) = crate::directory::sid::split_rid(sid)?;
    if !domain.starts_with("S-1-5-21-") {
        return None;
    }
    match rid {
        512 => Some("Domain Admins"),
        518 => Some("Schema Admins"),
        519 => Some("Enterprise Admins"),
        _ => None,
    }
}

pub fn not_privileged(
    account: &str,
    account_sid: Option<&str>,
    token_groups: &[String],
) -> CheckResult {
    let mut found: Vec<&str> = token_groups
        .iter()
        .filter_map(|s| privileged_group(s))
        .collect();
    if account_sid
        .and_then(crate::directory::sid::split_rid)
        .is_some_and(|(_, rid)| rid == 500)
    {
        found.insert(0, "the built-in Administrator account itself");
    }
    found.dedup();
    if found.is_empty() {
        CheckResult::pass(
            ACCOUNT_NOT_PRIVILEGED,
            format!("`{account}` is not in any administrative group"),
            format!(
                "{} groups checked through tokenGroups (nested membership included)",
                token_groups.len()
            ),
        )
    } else {
        CheckResult::fail(
            ACCOUNT_NOT_PRIVILEGED,
            format!("`{account}` is privileged: {}", found.join(", ")),
            "A sync agent needs only delegated rights on its Root User container; an administrative account turns any flaw in the agent into a domain compromise, and AD's SDProp strips delegated permissions from protected accounts.",
            "Use a dedicated, ordinary account (e.g. svc-sync) and delegate control of the Root User container to it; remove it from these groups.",
        )
    }
}

pub fn account_name(sam: &str) -> CheckResult {
    if sam.eq_ignore_ascii_case("jumpcloud") {
        CheckResult::fail(
            ACCOUNT_NAME,
            format!(
                "the service account is named `{sam}`, a name reserved for the cloud directory's own agents"
            ),
            "",
            "Create a dedicated account with another name, such as svc-sync.",
        )
    } else {
        CheckResult::pass(ACCOUNT_NAME, format!("account name `{sam}` is allowed"), "")
    }
}

pub fn admincount(account: &str, admin_count: Option<i64>) -> CheckResult {
    if admin_count == Some(1) {
        CheckResult::fail(
            ACCOUNT_ADMINCOUNT,
            format!("`{account}` has adminCount=1: AD treats it as a protected account"),
            "SDProp resets the permissions of protected accounts every hour, removing inherited delegations; the account is or was in an administrative group.",
            "Use an account that never was in an administrative group, or remove it from those groups, clear adminCount and re-enable inheritance on it.",
        )
    } else {
        CheckResult::pass(
            ACCOUNT_ADMINCOUNT,
            format!("`{account}` is not a protected (adminCount) account"),
            "",
        )
    }
}

pub fn enabled(
    account: &str,
    uac: i64,
    uac_computed: i64,
    account_expires: i64,
    now: i64,
) -> CheckResult {
    if uac & UAC_ACCOUNTDISABLE != 0 {
        return CheckResult::fail(
            ACCOUNT_ENABLED,
            format!("`{account}` is disabled"),
            "",
            BindFailure::Disabled.fix(),
        );
    }
    if (uac | uac_computed) & UAC_LOCKOUT != 0 {
        return CheckResult::fail(
            ACCOUNT_ENABLED,
            format!("`{account}` is locked out"),
            "",
            BindFailure::LockedOut.fix(),
        );
    }
    if let Some(exp) = filetime_to_unix(account_expires) {
        if exp <= now {
            return CheckResult::fail(
                ACCOUNT_ENABLED,
                format!("`{account}` expired on {}", unix_to_text(exp)),
                "",
                BindFailure::AccountExpired.fix(),
            );
        }
        if exp - now < EXPIRY_WARN_DAYS * 86_400 {
            return CheckResult::warn(
                ACCOUNT_ENABLED,
                format!(
                    "`{account}` expires on {}; the agent stops then",
                    unix_to_text(exp)
                ),
                "",
                BindFailure::AccountExpired.fix(),
            );
        }
    }
    CheckResult::pass(
        ACCOUNT_ENABLED,
        format!("`{account}` is enabled and not locked out"),
        "",
    )
}

/// Inputs of the password-expiry decision.
pub struct PasswordAge {
    pub uac: i64,
    pub uac_computed: i64,
    /// msDS-UserPasswordExpiryTimeComputed (honours fine-grained policies), when the DC gives it.
    pub expiry_computed: Option<i64>,
    pub pwd_last_set: Option<i64>,
    /// The domain's maxPwdAge (negative 100 ns ticks).
    pub max_pwd_age: Option<i64>,
}

pub fn password_expiry(account: &str, p: &PasswordAge, now: i64) -> CheckResult {
    let fix = "Set \"Password never expires\" on the service account (and rotate it by hand on your schedule), or plan to update ad-sync before it expires.";
    if (p.uac | p.uac_computed) & UAC_PASSWORD_EXPIRED != 0 {
        return CheckResult::fail(
            ACCOUNT_PASSWORD_EXPIRY,
            format!("the password of `{account}` has expired"),
            "",
            BindFailure::PasswordExpired.fix(),
        );
    }
    if p.uac & UAC_DONT_EXPIRE_PASSWORD != 0 {
        return CheckResult::pass(
            ACCOUNT_PASSWORD_EXPIRY,
            format!("the password of `{account}` never expires"),
            "",
        );
    }
    let expiry = match p.expiry_computed {
        Some(v) => filetime_to_unix(v),
        None => match (
            p.pwd_last_set.and_then(filetime_to_unix),
            p.max_pwd_age.and_then(interval_days),
        ) {
            (Some(set), Some(days)) => Some(set + days * 86_400),
            _ => None,
        },
    };
    match expiry {
        None => CheckResult::pass(
            ACCOUNT_PASSWORD_EXPIRY,
            format!("the password of `{account}` does not expire under the domain's policy"),
            "",
        ),
        Some(at) => {
            let days = (at - now).div_euclid(86_400);
            CheckResult::warn(
                ACCOUNT_PASSWORD_EXPIRY,
                format!(
                    "the password of `{account}` expires on {} (in {days} days); the agent stops working then",
                    unix_to_text(at)
                ),
                "",
                fix,
            )
        }
    }
}

pub fn root_domain_matches(root: &Dn, default_nc: &Dn) -> CheckResult {
    let nc = default_nc.to_semicolon_form();
    if root.ends_with(default_nc) {
        CheckResult::pass(
            ROOT_DN_DOMAIN_MATCHES,
            format!("the Root User container is in the DC's domain {nc}"),
            "",
        )
    } else {
        CheckResult::fail(
            ROOT_DN_DOMAIN_MATCHES,
            format!(
                "the Root User container `{}` is not in the DC's domain {nc}",
                root.to_semicolon_form()
            ),
            "",
            format!(
                "Use a container under {nc}, or point dc_host at a DC of the container's domain."
            ),
        )
    }
}

pub fn root_exists(root: &Dn, object_classes: Option<&[String]>) -> CheckResult {
    let shown = root.to_semicolon_form();
    match object_classes {
        None => CheckResult::fail(
            ROOT_DN_EXISTS,
            format!("the Root User container `{shown}` does not exist"),
            "",
            "Copy the container's distinguishedName from ADUC (View > Advanced Features, Properties > Attribute Editor) or create the OU.",
        ),
        Some(classes) => {
            let is_container = classes.iter().any(|c| {
                [
                    "organizationalUnit",
                    "container",
                    "builtinDomain",
                    "domainDNS",
                ]
                .iter()
                .any(|k| c.eq_ignore_ascii_case(k))
            });
            if is_container {
                CheckResult::pass(
                    ROOT_DN_EXISTS,
                    format!("`{shown}` exists"),
                    format!("objectClass: {}", classes.join(", ")),
                )
            } else {
                CheckResult::fail(
                    ROOT_DN_EXISTS,
                    format!(
                        "`{shown}` exists but is not a container or OU (it is a {})",
                        classes.last().map(String::as_str).unwrap_or("?")
                    ),
                    "",
                    "Give the DN of an OU or container, not of a user or group.",
                )
            }
        }
    }
}

const NOT_PROVEN: &str = "allowedChildClassesEffective proves the right to create users and groups here. It does not prove the rights on objects that already exist (reset password, enable/disable, write attributes, change group membership, delete); grant them with the same delegation.";
const DELEGATION_FIX: &str = "In ADUC right-click the container > Delegate Control, add the service account and tick: Create, delete, and manage user accounts; Reset user passwords and force password change at next logon; Read all user information; Create, delete and manage groups; Modify the membership of a group.";

pub fn delegation(account: &str, allowed_child_classes: &[String]) -> CheckResult {
    let can = |class: &str| {
        allowed_child_classes
            .iter()
            .any(|c| c.eq_ignore_ascii_case(class))
    };
    let missing: Vec<&str> = ["user", "group"].into_iter().filter(|c| !can(c)).collect();
    if missing.is_empty() {
        CheckResult::pass(
            ROOT_DN_DELEGATION,
            format!("`{account}` can create users and groups in the Root User container"),
            NOT_PROVEN,
        )
    } else {
        CheckResult::fail(
            ROOT_DN_DELEGATION,
            format!(
                "`{account}` cannot create {} objects in the Root User container",
                missing.join(" or ")
            ),
            NOT_PROVEN,
            DELEGATION_FIX,
        )
    }
}

pub fn sync_group(dn: &Dn, entry: Option<(&[String], Option<i64>)>) -> [CheckResult; 2] {
    let shown = dn.to_semicolon_form();
    let Some((classes, group_type)) = entry else {
        return [
            CheckResult::fail(
                SYNC_GROUP_EXISTS,
                format!("the sync group `{shown}` does not exist"),
                "",
                "Create the security group in ADUC (Group scope: Global, Group type: Security) or correct sync_group_dn.",
            ),
            CheckResult::skip(
                SYNC_GROUP_IS_SECURITY_GROUP,
                "the sync group does not exist",
            ),
        ];
    };
    if !classes.iter().any(|c| c.eq_ignore_ascii_case("group")) {
        return [
            CheckResult::fail(
                SYNC_GROUP_EXISTS,
                format!(
                    "`{shown}` exists but is not a group (it is a {})",
                    classes.last().map(String::as_str).unwrap_or("?")
                ),
                "",
                "Give the DN of a security group.",
            ),
            CheckResult::skip(
                SYNC_GROUP_IS_SECURITY_GROUP,
                "the sync group DN is not a group",
            ),
        ];
    }
    let exists = CheckResult::pass(
        SYNC_GROUP_EXISTS,
        format!("the sync group `{shown}` exists"),
        "",
    );
    let security = match group_type {
        Some(t) if t & GROUP_TYPE_SECURITY != 0 => CheckResult::pass(
            SYNC_GROUP_IS_SECURITY_GROUP,
            "the sync group is a security group",
            "",
        ),
        _ => CheckResult::fail(
            SYNC_GROUP_IS_SECURITY_GROUP,
            format!(
                "`{shown}` is a distribution group; the cloud's groups are security groups and must nest under one"
            ),
            format!(
                "groupType: {}",
                group_type.map_or("(unset)".into(), |t| t.to_string())
            ),
            "In the group's Properties > General, set Group type to Security (or create a new security group).",
        ),
    };
    [exists, security]
}

/// `domain.tier0`: whether who holds power in the domain could be read completely (the
/// read the agent repeats in every run that has work).
pub fn tier0(read: Result<crate::tier0::Tier0, String>) -> CheckResult {
    match read {
        Err(e) => CheckResult::fail(
            DOMAIN_TIER0,
            format!("who holds power in the domain could not be read: {e}"),
            "",
            "Check the domain controller is healthy and retry; the agent refuses every password, enable and membership until it can read this.",
        ),
        Ok(t) => match t.blanket() {
            Some(why) => CheckResult::fail(
                DOMAIN_TIER0,
                "no account can be proven unprivileged, so the agent would refuse every password, enable and membership".to_string(),
                why.to_string(),
                "Do what the detail says, then run the check again.",
            ),
            None => CheckResult::pass(
                DOMAIN_TIER0,
                format!(
                    "who holds power in the domain was read: {} accounts and groups are Tier 0 (by the permissions on the domain, AdminSDHolder, the Domain Controllers OU, the agent's containers and their GPOs, or by a privileged group at any depth)",
                    t.len()
                ),
                "The agent reads this again in every run that has work, and never takes over, sets a password on, enables or changes the memberships of any of them.",
            ),
        },
    }
}

/// `sync_group.not_privileged`: what `directory::object::group_privilege` found. Every cloud
/// group is put in the sync group, so a privileged one would make every cloud user privileged.
pub fn sync_group_privilege(dn: &Dn, found: Result<Option<String>, String>) -> CheckResult {
    let shown = dn.to_semicolon_form();
    match found {
        Ok(None) => CheckResult::pass(
            SYNC_GROUP_NOT_PRIVILEGED,
            format!("the sync group `{shown}` is not protected and is in no privileged group"),
            "checked: adminCount, critical system object, built-in RID, and every group it is in, nested included",
        ),
        Ok(Some(why)) => CheckResult::fail(
            SYNC_GROUP_NOT_PRIVILEGED,
            format!("the sync group `{shown}` must not be used: {why}"),
            "the agent puts every cloud group in the sync group, so every cloud user would get its privileges; the agent refuses to write it",
            "Create a new, ordinary security group for the cloud's groups (in no administrative group) and give its DN as the sync group.",
        ),
        Err(e) => CheckResult::fail(
            SYNC_GROUP_NOT_PRIVILEGED,
            format!("the groups the sync group `{shown}` is in could not be read: {e}"),
            "",
            "Give the service account Read access to the sync group and the groups it is in, then check again.",
        ),
    }
}

/// The domain's password and lockout policy, as stored on the domain object.
#[derive(Debug, Clone, Default)]
pub struct PasswordPolicy {
    pub min_length: Option<i64>,
    pub properties: Option<i64>,
    pub history: Option<i64>,
    pub max_age: Option<i64>,
    pub lockout_threshold: Option<i64>,
    pub lockout_duration: Option<i64>,
}

pub fn password_policy(p: Option<&PasswordPolicy>) -> CheckResult {
    let Some(p) = p.filter(|p| p.min_length.is_some() && p.properties.is_some()) else {
        return CheckResult::warn(
            PASSWORD_POLICY,
            "the domain's password policy could not be read by the service account",
            "",
            "Passwords from the cloud that do not meet the domain's policy will be rejected by AD; make the cloud's policy at least as strict as the domain's.",
        );
    };
    let props = p.properties.unwrap_or(0);
    let complexity = if props & PWD_COMPLEX != 0 {
        "required"
    } else {
        "off"
    };
    let lockout = match p.lockout_threshold {
        Some(n) if n > 0 => {
            let minutes = p.lockout_duration.and_then(|d| {
                (d != i64::MIN && d != 0).then(|| d.unsigned_abs() / 10_000_000 / 60)
            });
            match minutes {
                Some(m) => format!("after {n} bad passwords, for {m} min"),
                None => format!("after {n} bad passwords, until an admin unlocks"),
            }
        }
        _ => "never".into(),
    };
    let max_age = match p.max_age.and_then(interval_days) {
        Some(d) => format!("{d} days"),
        None => "never".into(),
    };
    let summary = format!(
        "minimum length {}, complexity {complexity}, history {}, maximum age {max_age}, lockout {lockout}",
        p.min_length.unwrap_or(0),
        p.history.unwrap_or(0)
    );
    let detail = "Passwords set in the cloud are written to AD, which rejects any that fail this policy; keep the cloud's policy at least as strict.";
    if props & PWD_STORE_CLEARTEXT != 0 {
        return CheckResult::warn(
            PASSWORD_POLICY,
            format!("the domain stores passwords with reversible encryption; {summary}"),
            detail,
            "Turn off \"Store passwords using reversible encryption\" in the Default Domain Policy (Computer Configuration > Policies > Windows Settings > Security Settings > Account Policies > Password Policy).",
        );
    }
    CheckResult::pass(PASSWORD_POLICY, summary, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::Status;

    fn ad_caps() -> Vec<String> {
        [
            "1.2.840.113556.1.4.800",
            "1.2.840.113556.1.4.1670",
            "1.2.840.113556.1.4.1791",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// The RootDSE capabilities of a Windows Server 2019 RODC, as recorded from one.
    #[test]
    fn refuses_a_read_only_dc_from_its_recorded_root_dse() {
        let mut caps = ad_caps();
        caps.push("1.2.840.113556.1.4.1920".into());
        caps.push("1.2.840.113556.1.4.1935".into());
        let dse = RootDse {
            default_naming_context: Some("DC=example,DC=com".into()),
            dns_host_name: Some("rodc1.example.com".into()),
            supported_capabilities: caps,
            is_synchronized: Some(true),
        };
        let r = dc_writable("rodc1.example.com", &dse);
        assert_eq!(r.status, Status::Fail);
        assert!(r.summary.contains("read-only"), "{}", r.summary);
    }

    #[test]
    fn refuses_a_server_that_is_not_ad_and_warns_on_unsynchronised() {
        let openldap = RootDse {
            supported_capabilities: vec![],
            ..Default::default()
        };
        assert_eq!(dc_writable("ldap1", &openldap).status, Status::Fail);
        let fresh = RootDse {
            supported_capabilities: ad_caps(),
            is_synchronized: Some(false),
            ..Default::default()
        };
        assert_eq!(dc_writable("dc9", &fresh).status, Status::Warn);
    }

    #[test]
    fn privilege_matches_rids_in_any_domain_and_the_builtin_admin() {
        let sids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let r = not_privileged(
            "x",
            None,
            &sids(&["S-1-5-21-1-2-3-513", "S-1-5-21-9-9-9-519"]),
        );
        assert_eq!(r.status, Status::Fail);
        assert!(r.summary.contains("Enterprise Admins"));
        let r = not_privileged(
            "x",
            Some("S-1-5-21-1-2-3-500"),
            &sids(&["S-1-5-21-1-2-3-513"]),
        );
        assert_eq!(r.status, Status::Fail);
        let r = not_privileged(
            "x",
            Some("S-1-5-21-1-2-3-1105"),
            &sids(&["S-1-5-21-1-2-3-513", "S-1-5-32-545"]),
        );
        assert_eq!(r.status, Status::Pass);
    }

    #[test]
    fn password_expiry_uses_policy_when_no_computed_value() {
        let now = 1_800_000_000;
        let set = crate::time_fmt::unix_to_filetime(now - 10 * 86_400);
        let p = PasswordAge {
            uac: 0x200,
            uac_computed: 0,
            expiry_computed: None,
            pwd_last_set: Some(set),
            max_pwd_age: Some(-36_288_000_000_000),
        };
        let r = password_expiry("svc", &p, now);
        assert_eq!(r.status, Status::Warn);
        assert!(r.summary.contains("in 32 days"), "{}", r.summary);
        let never = PasswordAge { uac: 0x10200, ..p };
        assert_eq!(password_expiry("svc", &never, now).status, Status::Pass);
    }

    #[test]
    fn account_expiry_soon_warns_and_past_fails() {
        let now = 1_800_000_000;
        let soon = crate::time_fmt::unix_to_filetime(now + 86_400);
        let past = crate::time_fmt::unix_to_filetime(now - 86_400);
        assert_eq!(enabled("a", 0x200, 0, soon, now).status, Status::Warn);
        assert_eq!(enabled("a", 0x200, 0, past, now).status, Status::Fail);
        assert_eq!(enabled("a", 0x200, 0, 0, now).status, Status::Pass);
        assert_eq!(enabled("a", 0x200, 0, i64::MAX, now).status, Status::Pass);
    }
}
