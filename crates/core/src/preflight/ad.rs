//! The AD checks' I/O: one connection, the fewest LDAP operations that answer every check
//! honestly (RootDSE, bind, the account, its tokenGroups, the domain's policy, the Root User
//! container, the sync group), each answer handed to `evaluate`.
//!
//! Dropping the future returned by `run` cancels it; every step has a timeout.

use super::evaluate::{self, PasswordAge, PasswordPolicy, RootDse};
use super::ids::*;
use super::{CheckResult, Report};
use crate::answers::Answers;
use crate::directory::bind::AccountName;
use crate::directory::{self, BindError, EntryExt, Session, Stats};
use crate::dn::Dn;
use ldap3::Scope;

/// The ids this module reports after the connection checks, in order.
const AFTER_CONNECT: [&str; 15] = [
    DC_WRITABLE,
    LDAP_BIND,
    ACCOUNT_NOT_PRIVILEGED,
    ACCOUNT_NAME,
    ACCOUNT_ADMINCOUNT,
    ACCOUNT_ENABLED,
    ACCOUNT_PASSWORD_EXPIRY,
    ROOT_DN_EXISTS,
    ROOT_DN_DOMAIN_MATCHES,
    ROOT_DN_DELEGATION,
    SYNC_GROUP_EXISTS,
    SYNC_GROUP_IS_SECURITY_GROUP,
    SYNC_GROUP_NOT_PRIVILEGED,
    DOMAIN_TIER0,
    PASSWORD_POLICY,
];

/// Collects results, and fills every id not yet reported with a skip giving `why`.
struct Results(Vec<CheckResult>);

impl Results {
    fn push(&mut self, r: CheckResult) {
        self.0.push(r);
    }

    fn has(&self, id: &str) -> bool {
        self.0.iter().any(|c| c.id == id)
    }

    fn skip_rest(&mut self, why: &str) {
        for id in AFTER_CONNECT {
            if !self.has(id) {
                self.0.push(CheckResult::skip(id, why));
            }
        }
    }
}

/// How far the AD checks go: `Connection` stops before the service account logs on (the
/// wizard's domain controller, connection and Root User pages ask no password yet); `Full` runs
/// them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connection,
    Full,
}

pub async fn run(answers: &Answers) -> Report {
    run_stage(answers, Stage::Full).await
}

pub async fn run_stage(answers: &Answers, stage: Stage) -> Report {
    let mut results = Results(Vec::new());
    let (root_res, root_dn) = evaluate::dn_field(
        DN_ROOT,
        "Root User container",
        Some(&answers.directory.root_user_dn),
    );
    results.push(root_res);
    let (group_res, group_dn) = match answers.directory.sync_group_dn.as_deref() {
        // Only the cloud → AD direction puts groups in AD: with AD as the only source there is
        // no sync group to give, and none is asked for.
        None if !answers.sync.direction.to_ad() => (
            CheckResult::skip(
                DN_SYNC_GROUP,
                "no sync group: with [sync] direction = \"ad-to-cloud\" nothing is written to AD, so none is needed",
            ),
            None,
        ),
        given => evaluate::dn_field(DN_SYNC_GROUP, "sync group", given),
    };
    results.push(group_res);

    let opts = answers.connect_options(root_dn.as_ref().and_then(Dn::domain).as_deref());
    let mut conn = directory::connect(&opts).await;
    for r in evaluate::connection(&conn) {
        results.push(r);
    }
    let mut stats = Stats {
        connections: conn.connections_opened,
        operations: 0,
    };
    let Some(mut session) = conn.session.take() else {
        results.skip_rest("there is no connection to the domain controller");
        return Report {
            checks: order(results.0),
            stats,
        };
    };
    let ctx = Ctx {
        answers,
        stage,
        host: &opts.host,
        root_dn: root_dn.as_ref(),
        group_dn: group_dn.as_ref(),
    };
    ctx.on_session(&mut session, &mut results).await;
    stats.operations = session.stats().operations;
    session.close().await;
    stats.operations += 1; // the unbind
    Report {
        checks: order(results.0),
        stats,
    }
}

struct Ctx<'a> {
    answers: &'a Answers,
    stage: Stage,
    host: &'a str,
    root_dn: Option<&'a Dn>,
    group_dn: Option<&'a Dn>,
}

const ACCOUNT_ATTRS: [&str; 10] = [
    "sAMAccountName",
    "userPrincipalName",
    "objectSid",
    "userAccountControl",
    "msDS-User-Account-Control-Computed",
    "adminCount",
    "pwdLastSet",
    "accountExpires",
    "msDS-UserPasswordExpiryTimeComputed",
    "distinguishedName",
];

const POLICY_ATTRS: [&str; 6] = [
    "minPwdLength",
    "pwdProperties",
    "pwdHistoryLength",
    "maxPwdAge",
    "lockoutThreshold",
    "lockoutDuration",
];

impl Ctx<'_> {
    async fn on_session(&self, session: &mut Session, results: &mut Results) {
        // RootDSE: readable before bind on every AD DC; names the domain for bare account names.
        let dse = match session
            .read_entry(
                "",
                &[
                    "defaultNamingContext",
                    "dnsHostName",
                    "supportedCapabilities",
                    "isSynchronized",
                ],
            )
            .await
        {
            Ok(Some(e)) => RootDse {
                default_naming_context: e.first("defaultNamingContext").map(str::to_string),
                dns_host_name: e.first("dnsHostName").map(str::to_string),
                supported_capabilities: e.all("supportedCapabilities").to_vec(),
                is_synchronized: e
                    .first("isSynchronized")
                    .map(|v| v.eq_ignore_ascii_case("TRUE")),
            },
            other => {
                let why = match other {
                    Err(e) => e.to_string(),
                    _ => "the server returned no entry".into(),
                };
                results.push(CheckResult::fail(
                    DC_WRITABLE,
                    format!("{} did not return its RootDSE", self.host),
                    why,
                    "Point dc_host at an Active Directory domain controller.",
                ));
                results.skip_rest("the domain controller's RootDSE could not be read");
                return;
            }
        };
        results.push(evaluate::dc_writable(self.host, &dse));
        let default_nc = dse
            .default_naming_context
            .as_deref()
            .and_then(|s| Dn::parse(s).ok())
            .map(|p| p.dn);
        let Some(default_nc) = default_nc else {
            results
                .skip_rest("the domain controller did not name its domain (defaultNamingContext)");
            return;
        };
        if self.stage == Stage::Connection {
            // The domain is known from the RootDSE, so the Root User container's domain can be
            // compared before anyone logs on.
            if let Some(root) = self.root_dn {
                results.push(evaluate::root_domain_matches(root, &default_nc));
            }
            results.skip_rest("this stage stops before the service account logs on");
            return;
        }
        let nc_text = default_nc.to_comma_form();
        let dns_domain = default_nc.domain().unwrap_or_default();

        let username = &self.answers.service_account.username;
        let account = match AccountName::parse(username) {
            Ok(a) => a,
            Err(e) => {
                results.push(CheckResult::fail(
                    LDAP_BIND,
                    format!("[service_account] username {e}"),
                    "",
                    "Write the service account as DOMAIN\\user, user@example.com or user.",
                ));
                results.skip_rest("the service account name is not valid");
                return;
            }
        };
        // The name rule needs no directory; report it even when the bind fails.
        results.push(evaluate::account_name(account.user()));
        let password = match self.answers.password() {
            Ok(p) => p,
            Err(e) => {
                results.push(CheckResult::fail(
                    LDAP_BIND,
                    format!("the service account password is not available: {e}"),
                    "",
                    "Give the password in the answers file as password, password_file or password_env.",
                ));
                results.skip_rest("the service account password is not available");
                return;
            }
        };
        let bind_name = account.bind_name(&dns_domain);
        match session.simple_bind(&bind_name, &password).await {
            Ok(()) => results.push(CheckResult::pass(
                LDAP_BIND,
                format!("logged on as `{bind_name}` over TLS"),
                "",
            )),
            Err(BindError::Refused {
                reason,
                server_text,
            }) => {
                results.push(evaluate::bind_refused(&bind_name, reason, &server_text));
                for r in evaluate::from_bind_failure(reason) {
                    results.push(r);
                }
                results.skip_rest("the service account could not log on (see ldap.bind)");
                return;
            }
            Err(BindError::Op(e)) => {
                results.push(CheckResult::fail(
                    LDAP_BIND,
                    format!("logging on as `{bind_name}` failed: {e}"),
                    "",
                    "Check the DC is healthy and retry; raise [ldap] timeout_seconds on a slow link.",
                ));
                results.skip_rest("the service account could not log on (see ldap.bind)");
                return;
            }
        }
        drop(password);

        // The domain object carries the password policy; its maxPwdAge also dates the
        // account's password when the DC does not compute the expiry itself.
        let policy = match session.read_entry(&nc_text, &POLICY_ATTRS).await {
            Ok(Some(e)) => Some(PasswordPolicy {
                min_length: e.int("minPwdLength"),
                properties: e.int("pwdProperties"),
                history: e.int("pwdHistoryLength"),
                max_age: e.int("maxPwdAge"),
                lockout_threshold: e.int("lockoutThreshold"),
                lockout_duration: e.int("lockoutDuration"),
            }),
            Ok(None) | Err(_) => None,
        };
        let max_age = policy.as_ref().and_then(|p| p.max_age);
        self.account_checks(session, results, &account, &nc_text, max_age)
            .await;
        self.root_checks(session, results, &default_nc, account.user())
            .await;
        self.group_checks(session, results).await;
        self.tier0_check(session, results, &account, &dns_domain_of(&default_nc))
            .await;
        results.push(evaluate::password_policy(policy.as_ref()));
    }

    async fn account_checks(
        &self,
        session: &mut Session,
        results: &mut Results,
        account: &AccountName,
        nc: &str,
        max_pwd_age: Option<i64>,
    ) {
        let shown = account.user().to_string();
        let found = match session
            .search(nc, Scope::Subtree, &account.search_filter(), &ACCOUNT_ATTRS)
            .await
        {
            Ok(mut v) => match (v.pop(), v.len()) {
                (Some(entry), 0) => Ok(entry),
                (None, _) => Err((
                    format!("logged on, but no user entry named `{shown}` was found under {nc}"),
                    "Give the account as DOMAIN\\sAMAccountName so it can be found.",
                )),
                (Some(_), others) => Err((
                    format!(
                        "{} accounts match `{shown}`; use DOMAIN\\user or the full UPN",
                        others + 1
                    ),
                    "Name the account unambiguously.",
                )),
            },
            Err(e) => Err((
                format!("the service account's entry could not be read: {e}"),
                "Make sure the account may read its own entry (Authenticated Users have this by default).",
            )),
        };
        let entry = match found {
            Ok(entry) => entry,
            Err((why, fix)) => {
                for id in [
                    ACCOUNT_NOT_PRIVILEGED,
                    ACCOUNT_ADMINCOUNT,
                    ACCOUNT_ENABLED,
                    ACCOUNT_PASSWORD_EXPIRY,
                ] {
                    results.push(CheckResult::fail(id, why.clone(), "", fix));
                }
                return;
            }
        };
        let sam = entry.first("sAMAccountName").unwrap_or(&shown).to_string();
        let account_sid = entry
            .binary("objectSid")
            .first()
            .and_then(|b| directory::sid::to_string(b));

        // tokenGroups is computed per entry, so only a base-scope read returns it.
        match session.read_entry(&entry.dn, &["tokenGroups"]).await {
            Ok(Some(tg)) => {
                let sids: Vec<String> = tg
                    .binary("tokenGroups")
                    .iter()
                    .filter_map(|b| directory::sid::to_string(b))
                    .collect();
                results.push(evaluate::not_privileged(&sam, account_sid.as_deref(), &sids));
            }
            Ok(None) => results.push(CheckResult::fail(
                ACCOUNT_NOT_PRIVILEGED,
                format!("the group memberships (tokenGroups) of `{sam}` could not be read"),
                "the account's own entry was not returned",
                "Make sure the account may read its own entry; without tokenGroups its privileges cannot be checked.",
            )),
            Err(e) => results.push(CheckResult::fail(
                ACCOUNT_NOT_PRIVILEGED,
                format!("the group memberships (tokenGroups) of `{sam}` could not be read"),
                e.to_string(),
                "Make sure the account may read its own entry; without tokenGroups its privileges cannot be checked.",
            )),
        }
        results.push(evaluate::admincount(&sam, entry.int("adminCount")));
        let uac = entry.int("userAccountControl").unwrap_or(0);
        let uac_computed = entry.int("msDS-User-Account-Control-Computed").unwrap_or(0);
        let now = crate::time_fmt::now_unix();
        results.push(evaluate::enabled(
            &sam,
            uac,
            uac_computed,
            entry.int("accountExpires").unwrap_or(0),
            now,
        ));
        let age = PasswordAge {
            uac,
            uac_computed,
            expiry_computed: entry.int("msDS-UserPasswordExpiryTimeComputed"),
            pwd_last_set: entry.int("pwdLastSet"),
            max_pwd_age,
        };
        results.push(evaluate::password_expiry(&sam, &age, now));
    }

    async fn root_checks(
        &self,
        session: &mut Session,
        results: &mut Results,
        default_nc: &Dn,
        account: &str,
    ) {
        let Some(root) = self.root_dn else {
            for id in [ROOT_DN_EXISTS, ROOT_DN_DOMAIN_MATCHES, ROOT_DN_DELEGATION] {
                results.push(CheckResult::skip(
                    id,
                    "the Root User container DN is not valid (see dn.root)",
                ));
            }
            return;
        };
        let in_domain = evaluate::root_domain_matches(root, default_nc);
        let matches = in_domain.status == super::Status::Pass;
        results.push(in_domain);
        if !matches {
            for id in [ROOT_DN_EXISTS, ROOT_DN_DELEGATION] {
                results.push(CheckResult::skip(id, "the Root User container is not in this DC's domain (see root_dn.domain_matches)"));
            }
            return;
        }
        match session
            .read_entry(
                &root.to_comma_form(),
                &["objectClass", "allowedChildClassesEffective"],
            )
            .await
        {
            Ok(Some(e)) => {
                let exists = evaluate::root_exists(root, Some(e.all("objectClass")));
                let is_container = exists.status == super::Status::Pass;
                results.push(exists);
                if is_container {
                    results.push(evaluate::delegation(
                        account,
                        e.all("allowedChildClassesEffective"),
                    ));
                } else {
                    results.push(CheckResult::skip(
                        ROOT_DN_DELEGATION,
                        "the Root User DN is not a container",
                    ));
                }
            }
            Ok(None) => {
                results.push(evaluate::root_exists(root, None));
                results.push(CheckResult::skip(
                    ROOT_DN_DELEGATION,
                    "the Root User container does not exist",
                ));
            }
            Err(e) => {
                results.push(CheckResult::fail(
                    ROOT_DN_EXISTS,
                    format!("the Root User container could not be read: {e}"),
                    "",
                    "Give the service account Read access to the container (Delegate Control > Read all user information).",
                ));
                results.push(CheckResult::skip(
                    ROOT_DN_DELEGATION,
                    "the Root User container could not be read",
                ));
            }
        }
    }

    async fn group_checks(&self, session: &mut Session, results: &mut Results) {
        let Some(group) = self.group_dn else {
            for id in [
                SYNC_GROUP_EXISTS,
                SYNC_GROUP_IS_SECURITY_GROUP,
                SYNC_GROUP_NOT_PRIVILEGED,
            ] {
                results.push(CheckResult::skip(
                    id,
                    if self.answers.directory.sync_group_dn.is_none()
                        && !self.answers.sync.direction.to_ad()
                    {
                        "no sync group is needed with [sync] direction = \"ad-to-cloud\" (see dn.sync_group)"
                    } else {
                        "the sync group DN is not valid (see dn.sync_group)"
                    },
                ));
            }
            return;
        };
        match session
            .read_entry(&group.to_comma_form(), &["objectClass", "groupType"])
            .await
        {
            Ok(Some(e)) => {
                let is_group = e
                    .all("objectClass")
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case("group"));
                for r in
                    evaluate::sync_group(group, Some((e.all("objectClass"), e.int("groupType"))))
                {
                    results.push(r);
                }
                if !is_group {
                    results.push(CheckResult::skip(
                        SYNC_GROUP_NOT_PRIVILEGED,
                        "the sync group DN is not a group",
                    ));
                    return;
                }
                let found = crate::directory::object::group_privilege(
                    &session.handle(),
                    session.op_timeout(),
                    &group.to_comma_form(),
                )
                .await;
                results.push(evaluate::sync_group_privilege(
                    group,
                    found.map_err(|e| e.to_string()),
                ));
            }
            Ok(None) => {
                for r in evaluate::sync_group(group, None) {
                    results.push(r);
                }
                results.push(CheckResult::skip(
                    SYNC_GROUP_NOT_PRIVILEGED,
                    "the sync group does not exist",
                ));
            }
            Err(e) => {
                results.push(CheckResult::fail(
                    SYNC_GROUP_EXISTS,
                    format!("the sync group could not be read: {e}"),
                    "",
                    "Give the service account Read access to the group, or correct sync_group_dn.",
                ));
                results.push(CheckResult::skip(
                    SYNC_GROUP_IS_SECURITY_GROUP,
                    "the sync group could not be read",
                ));
                results.push(CheckResult::skip(
                    SYNC_GROUP_NOT_PRIVILEGED,
                    "the sync group could not be read",
                ));
            }
        }
    }
}

/// `example.com` from `DC=example,DC=com`.
fn dns_domain_of(nc: &Dn) -> String {
    nc.domain().unwrap_or_default()
}

impl Ctx<'_> {
    /// `domain.tier0`: the read the agent makes in every run (`directory::power`), made here
    /// once, so an install never starts on a domain whose privileged set cannot be proven.
    async fn tier0_check(
        &self,
        session: &mut Session,
        results: &mut Results,
        account: &AccountName,
        dns_domain: &str,
    ) {
        let Some(root) = self.root_dn else {
            results.push(CheckResult::skip(
                DOMAIN_TIER0,
                "the Root User container DN is not valid (see dn.root)",
            ));
            return;
        };
        let scope = crate::adopt::Scope {
            root: root.clone(),
            sync_group: self.group_dn.cloned(),
            dns_domain: dns_domain.to_string(),
            host: String::new(),
            encrypted: true,
        };
        let read = crate::directory::power::tier0(
            &session.handle(),
            session.op_timeout(),
            &scope,
            Some(account),
        )
        .await;
        results.push(evaluate::tier0(read.map_err(|e| e.to_string())));
    }
}

/// Reports in the documented order (`ids::ALL`), whatever order they were produced in.
fn order(mut checks: Vec<CheckResult>) -> Vec<CheckResult> {
    checks.sort_by_key(|c| ALL.iter().position(|id| *id == c.id).unwrap_or(usize::MAX));
    checks
}
