//! Preflight checks: the one list of checks the wizard pages, `ad-sync-setup check` and the
//! install step all run, with stable ids that scripts key on.
//!
//! `CheckResult` is the reported shape (`{id, status, summary, detail, fix}`); `ad` gathers facts
//! from a domain controller over one connection and turns them into results; `evaluate` holds the
//! pure decisions, which tests also feed with recorded directory data.

pub mod ad;
pub mod browse;
pub mod cloud;
pub mod evaluate;
pub mod install;
pub mod preview;
pub mod source;

use serde::Serialize;

/// Check ids are part of the CLI contract: add new ones freely, never rename.
pub mod ids {
    pub const DN_ROOT: &str = "dn.root";
    pub const DN_SYNC_GROUP: &str = "dn.sync_group";
    pub const DC_RESOLVE: &str = "dc.resolve";
    pub const DC_REACHABLE: &str = "dc.reachable";
    pub const DC_WRITABLE: &str = "dc.writable";
    pub const LDAP_TLS: &str = "ldap.tls";
    pub const LDAP_FALLBACK: &str = "ldap.fallback";
    pub const LDAP_BIND: &str = "ldap.bind";
    pub const ACCOUNT_NOT_PRIVILEGED: &str = "account.not_privileged";
    pub const ACCOUNT_NAME: &str = "account.name";
    pub const ACCOUNT_ADMINCOUNT: &str = "account.admincount";
    pub const ACCOUNT_ENABLED: &str = "account.enabled";
    pub const ACCOUNT_PASSWORD_EXPIRY: &str = "account.password_expiry";
    pub const ROOT_DN_EXISTS: &str = "root_dn.exists";
    pub const ROOT_DN_DOMAIN_MATCHES: &str = "root_dn.domain_matches";
    pub const ROOT_DN_DELEGATION: &str = "root_dn.delegation";
    pub const SYNC_GROUP_EXISTS: &str = "sync_group.exists";
    pub const SYNC_GROUP_IS_SECURITY_GROUP: &str = "sync_group.is_security_group";
    /// The sync group is not protected and not in a privileged group, at any depth: the agent
    /// puts every cloud group in it.
    pub const SYNC_GROUP_NOT_PRIVILEGED: &str = "sync_group.not_privileged";
    /// Who holds power in the domain (Tier 0, from the ACLs of its key objects and the
    /// privileged groups) can be read completely, as the agent reads it in every run.
    pub const DOMAIN_TIER0: &str = "domain.tier0";
    pub const CLOUD_REACHABLE: &str = "cloud.reachable";
    pub const CLOUD_TLS: &str = "cloud.tls";
    pub const CONNECT_KEY_FORMAT: &str = "connect_key.format";
    pub const CONNECT_KEY_VALID: &str = "connect_key.valid";
    pub const CONNECT_KEY_DOMAIN_MATCHES: &str = "connect_key.domain_matches";
    pub const PASSWORD_POLICY: &str = "password_policy";
    /// Reported only when the answers give `[install] dir` (the wizard always does).
    pub const INSTALL_FOLDER: &str = "install.folder";
    /// What the first sync would do (never fails; a warning when some objects will not sync).
    pub const SYNC_PREVIEW: &str = "sync.preview";
    /// AD as a source's scope: its containers and groups exist, the DC takes its filter, and
    /// how many users it selects. Reported only when `[sync] direction` has AD as a source.
    pub const SOURCE_SCOPE: &str = "source.scope";
    /// Whether deletions in AD reach the cloud with the next export (the service account sees
    /// Deleted Objects, which DirSync needs) or only with the daily reconciliation (a warning).
    /// Reported only when `[sync] direction` has AD as a source.
    pub const SOURCE_DELETIONS: &str = "source.deletions";
    /// How the agent will read AD's changes: DirSync, or `uSNChanged` where the DC refuses
    /// DirSync (a warning saying what that costs) or the config asks for it. Reported only
    /// when `[sync] direction` has AD as a source.
    pub const SOURCE_CHANGES: &str = "source.changes";
    /// Every mapped attribute exists in AD's schema (a confidential one warns). Reported only
    /// when `[sync] direction` has AD as a source.
    pub const MAPPING_ATTRIBUTES: &str = "mapping.attributes";

    /// AD as a source's checks (reported only when the direction has AD as a source).
    pub const SOURCE: [&str; 4] = [
        SOURCE_SCOPE,
        SOURCE_CHANGES,
        SOURCE_DELETIONS,
        MAPPING_ATTRIBUTES,
    ];

    /// The checks that need the cloud.
    pub const CLOUD: [&str; 5] = [
        CLOUD_REACHABLE,
        CLOUD_TLS,
        CONNECT_KEY_FORMAT,
        CONNECT_KEY_VALID,
        CONNECT_KEY_DOMAIN_MATCHES,
    ];

    /// Every id, in the order checks are reported.
    pub const ALL: [&str; 27] = [
        DN_ROOT,
        DN_SYNC_GROUP,
        DC_RESOLVE,
        DC_REACHABLE,
        LDAP_TLS,
        LDAP_FALLBACK,
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
        CLOUD_REACHABLE,
        CLOUD_TLS,
        CONNECT_KEY_FORMAT,
        CONNECT_KEY_VALID,
        CONNECT_KEY_DOMAIN_MATCHES,
        SYNC_PREVIEW,
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Skip,
    Warn,
    Fail,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// One reported check. `detail` says what was found; `fix` what to do (empty on a pass).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    pub id: &'static str,
    pub status: Status,
    pub summary: String,
    pub detail: String,
    pub fix: String,
}

impl CheckResult {
    pub fn pass(id: &'static str, summary: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(id, Status::Pass, summary, detail, "")
    }

    pub fn warn(
        id: &'static str,
        summary: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(id, Status::Warn, summary, detail, fix)
    }

    pub fn fail(
        id: &'static str,
        summary: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(id, Status::Fail, summary, detail, fix)
    }

    /// A check that did not run, and why. Never reported as a pass.
    pub fn skip(id: &'static str, why: impl Into<String>) -> Self {
        Self::new(id, Status::Skip, why, "", "")
    }

    fn new(
        id: &'static str,
        status: Status,
        summary: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        CheckResult {
            id,
            status,
            summary: summary.into(),
            detail: detail.into(),
            fix: fix.into(),
        }
    }
}

/// The outcome of a whole preflight run, plus what it cost (for the bench and the logs).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub checks: Vec<CheckResult>,
    #[serde(skip)]
    pub stats: crate::directory::Stats,
}

impl Report {
    pub fn worst(&self) -> Status {
        self.checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Pass)
    }

    pub fn any_failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Fail)
    }

    pub fn get(&self, id: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.id == id)
    }
}

/// Which checks one run covers. The CLI and the install step run `All`; the wizard runs the
/// part a page needs, so typing on the connection page never logs on and typing a connect key
/// never touches the DC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// DC resolution, reachability, TLS, the fallback, the RootDSE (no logon).
    Connection,
    /// Every AD check, the logon included.
    Directory,
    /// The cloud and the connect key only.
    Cloud,
    /// AD as a source's scope and attribute map (`ids::SOURCE`; none when the direction does
    /// not have AD as a source).
    Source,
    All,
}

/// The checks of `scope` for an answers file. Ids outside the scope are not reported.
pub async fn run_scope(answers: &crate::answers::Answers, scope: Scope) -> Report {
    match scope {
        Scope::All => run(answers).await,
        Scope::Connection => ad::run_stage(answers, ad::Stage::Connection).await,
        Scope::Directory => ad::run_stage(answers, ad::Stage::Full).await,
        Scope::Cloud => Report {
            checks: cloud::run(answers).await,
            stats: Default::default(),
        },
        Scope::Source => Report {
            checks: source::run(answers).await,
            stats: Default::default(),
        },
    }
}

/// Every preflight check for an answers file: the domain controller's and the cloud's, run
/// side by side (neither waits for the other's timeouts).
pub async fn run(answers: &crate::answers::Answers) -> Report {
    let mut report = run_checks(answers).await;
    // The preview needs a logon and a key the cloud knows; otherwise it says which failed.
    let passed = |id| report.get(id).is_some_and(|c| c.status == Status::Pass);
    let preview = if !passed(ids::LDAP_BIND) {
        CheckResult::skip(
            ids::SYNC_PREVIEW,
            "the service account did not log on, so the domain's users cannot be read",
        )
    } else if !passed(ids::CONNECT_KEY_VALID) {
        CheckResult::skip(
            ids::SYNC_PREVIEW,
            "the connect key was not accepted, so the cloud's users cannot be read",
        )
    } else {
        preview::run(answers).await
    };
    report.checks.push(preview);
    report
}

/// Every check but the preview (what an install runs before it writes: the preview was shown
/// by `check` and the wizard's Review page, and reading the whole domain again would only
/// slow the install down).
pub async fn run_checks(answers: &crate::answers::Answers) -> Report {
    let (mut report, cloud, source) =
        tokio::join!(ad::run(answers), cloud::run(answers), source::run(answers));
    report.checks.extend(cloud);
    report.checks.extend(source);
    if let Some(dir) = answers.install.as_ref().map(|i| answers.path(&i.dir)) {
        report.checks.push(install_folder(dir).await);
    }
    report
}

/// `install.folder`, off the async threads (a network path can block).
pub async fn install_folder(dir: std::path::PathBuf) -> CheckResult {
    tokio::task::spawn_blocking(move || install::folder(&dir))
        .await
        .unwrap_or_else(|e| {
            CheckResult::fail(
                ids::INSTALL_FOLDER,
                format!("the destination folder check stopped: {e}"),
                "",
                "Retry the check.",
            )
        })
}

/// `connect_key.format`: the key's characters, length and checksum, with no network call.
pub fn connect_key_format(answers: &crate::answers::Answers) -> CheckResult {
    use crate::connect_key::ConnectKey;
    match answers.connect_key() {
        Ok(None) => CheckResult::skip(
            ids::CONNECT_KEY_FORMAT,
            "the answers file gives no connect key ([cloud] connect_key, connect_key_file or connect_key_env); none is needed to re-check an existing install",
        ),
        Err(e) => CheckResult::fail(
            ids::CONNECT_KEY_FORMAT,
            format!("the connect key is not available: {e}"),
            "",
            "Give the key as [cloud] connect_key_file or connect_key_env (keeps it off the command line).",
        ),
        Ok(Some(text)) => match ConnectKey::parse(text.expose()) {
            Ok(key) => CheckResult::pass(
                ids::CONNECT_KEY_FORMAT,
                format!(
                    "connect key {} is well-formed and its checksum matches",
                    key.redacted()
                ),
                "checked offline; whether the cloud knows it is connect_key.valid",
            ),
            Err(e) => CheckResult::fail(
                ids::CONNECT_KEY_FORMAT,
                format!("[cloud] connect key: {e}"),
                "",
                "Copy the key again from the cloud console (Domain > Connect key); keys start with ADS1-.",
            ),
        },
    }
}
