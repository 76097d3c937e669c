//! Installing the agent: the step the wizard's Install page and `ad-sync-setup install --answers`
//! both run, with the same code. `plan` turns validated answers and what is already on the
//! machine into a list of steps (pure data); `apply` carries them out, undoing every local step
//! when one fails before enrollment. `config`, `service`, `layout`, `enrollment` and `fsops` are
//! the pieces it writes with; `checks` adds the install's own checks to the preflight ones;
//! `uninstall` takes it all away again.

pub mod access;
pub mod access_linux;
pub mod apply;
pub mod checks;
pub mod config;
pub mod enrollment;
pub mod fsops;
pub mod layout;
pub mod plan;
pub mod restart;
pub mod service;
pub mod setup_log;
pub mod uninstall;
#[cfg(windows)]
pub mod winsec;

pub use apply::{Cancel, Outcome, Result_ as InstallResult, StepReport, StepStatus, apply};
pub use plan::{
    Ca, Existing, Facts, Mode, Options, Plan, PlannedStep, Prepared, Step, StepId, prepare,
};

use crate::answers::Answers;
use crate::preflight::{CheckResult, Report};

/// The answers as the checks should see them for `mode`: an enrolled agent needs no connect key
/// (the used one would fail `connect_key.valid`), and a resumed enrollment is proved by the
/// enrollment itself, which accepts the key this machine already used.
pub fn answers_for_checks(answers: &Answers, mode: Mode, opts: &Options) -> Answers {
    let mut a = answers.clone();
    // Under a staging prefix the destination folder checked is the staged one.
    if let (Some(_), Some(i)) = (&opts.prefix, a.install.as_mut()) {
        let l = layout::Layout::new(&opts.config, &answers.path(&i.dir), opts.prefix.as_deref());
        i.dir = l.real(&l.program_dir);
    }
    if mode != Mode::Fresh
        && let Some(c) = a.cloud.as_mut()
    {
        c.connect_key = None;
        c.connect_key_file = None;
        c.connect_key_env = None;
        // An upgrade that does not repeat the proxy's password is checked with the stored one
        // (the install keeps it too), as the service will use it.
        if c.proxy_username.is_some()
            && c.proxy_password.is_none()
            && c.proxy_password_file.is_none()
            && c.proxy_password_env.is_none()
        {
            let dir = answers
                .install
                .as_ref()
                .map(|i| answers.path(&i.dir))
                .unwrap_or_else(layout::default_program_dir);
            let l = layout::Layout::new(&opts.config, &dir, opts.prefix.as_deref());
            c.proxy_password = l.store().read(crate::secrets::PROXY_PASSWORD).ok();
        }
    }
    a
}

/// The install's own checks, beside the preflight ones.
pub fn install_checks(answers: &Answers, existing: &Existing, opts: &Options) -> Vec<CheckResult> {
    let mut out = vec![
        checks::privileges(opts.elevated, opts.prefix.is_some()),
        checks::service_manager(
            service::systemd_running(),
            opts.no_start,
            opts.prefix.is_some(),
        ),
        checks::agent_program(&opts.agent_source()),
    ];
    if existing.mode == Mode::Upgrade {
        if let Some(installed) = &existing.config {
            out.push(checks::account_unchanged(
                &installed.service_account.username,
                &answers.service_account.username,
            ));
        }
        if let Some(r) = &existing.record {
            out.push(checks::same_cloud(
                &r.cloud_url,
                answers.cloud.as_ref().and_then(|c| c.url.as_deref()),
            ));
        }
    }
    // Finishing an interrupted install needs the key it started with: said before anything runs.
    if existing.mode == Mode::Resume && answers.connect_key().ok().flatten().is_none() {
        out.push(CheckResult::fail(
            crate::preflight::ids::CONNECT_KEY_FORMAT,
            "an interrupted install is to be finished, and it needs the connect key it started with",
            "",
            "Give the same connect key in [cloud] (connect_key_file or connect_key_env).",
        ));
    }
    out
}

/// Every check an install runs: the preflight ones and the install's own.
pub async fn run_checks(answers: &Answers, existing: &Existing, opts: &Options) -> Report {
    let checked = answers_for_checks(answers, existing.mode, opts);
    let mut report = crate::preflight::run_checks(&checked).await;
    report
        .checks
        .extend(install_checks(answers, existing, opts));
    report
}
