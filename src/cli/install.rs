//! `install`, `review` and `uninstall`: the install step from the command line (unattended, for
//! scripts and Server Core), printing what the library decides.

use super::{EXIT_FAILED, EXIT_OK, EXIT_UNUSABLE, render_text, runtime};
use crate::answers::Answers;
use crate::install::{self, Existing, InstallResult, Options, Plan, StepStatus};
use serde_json::json;
use std::path::{Path, PathBuf};

/// A step failed before enrollment; everything was undone and the connect key is unused.
pub const EXIT_ROLLED_BACK: i32 = 3;
/// Enrolled, but a later step failed: re-run the same command to finish.
pub const EXIT_INCOMPLETE: i32 = 4;

pub struct InstallArgs {
    pub answers: PathBuf,
    pub config: PathBuf,
    pub prefix: Option<PathBuf>,
    pub no_start: bool,
    pub dry_run: bool,
    pub json: bool,
}

pub fn install(args: InstallArgs) -> i32 {
    let answers = match Answers::load(&args.answers) {
        Ok(a) => a,
        Err(e) => {
            // Recorded where an unattended run (the MSI's ANSWERS=) is looked into afterwards.
            let layout = install::restart::installed_layout(&args.config, args.prefix.as_deref());
            install::setup_log::append(
                &layout,
                &format!("install --answers {}", args.answers.display()),
                &[format!("result: nothing was installed: {e}")],
            );
            return unusable(&e.to_string(), args.json);
        }
    };
    if let Some(p) = &args.prefix
        && !p.is_absolute()
    {
        return unusable(
            &format!(
                "--prefix {}: give a full path, e.g. /tmp/stage",
                p.display()
            ),
            args.json,
        );
    }
    let mut opts = Options::new(args.config);
    opts.prefix = args.prefix;
    opts.no_start = args.no_start;
    let install::Prepared { facts, plan } = install::prepare(&answers, &opts);
    let existing = &facts.existing;
    let rt = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let report = rt.block_on(install::run_checks(&answers, existing, &opts));
    let what = format!("install --answers {}", args.answers.display());
    drop(rt);
    if report.any_failed() || args.dry_run {
        let failed = report.any_failed();
        if failed {
            install::setup_log::record_install(&plan.layout, &what, &report, None);
        }
        if args.json {
            println!(
                "{}",
                json!({"checks": report.checks, "plan": plan, "steps": [], "result": if failed { "checks_failed" } else { "planned" }})
            );
        } else {
            print!("{}", render_text(&report));
            if failed {
                eprintln!(
                    "\nNothing was installed: fix the failed checks above and run the install again. No connect key was used."
                );
            } else {
                print_plan(&plan, existing);
            }
        }
        return if failed { EXIT_FAILED } else { EXIT_OK };
    }
    if !args.json {
        print!("{}", render_text(&report));
        print_plan(&plan, existing);
        println!();
    }
    let cancel = install::Cancel::default();
    let json_mode = args.json;
    let mut shown: Vec<StepStatus> = Vec::new();
    let outcome = install::apply(&plan, &answers, &cancel, &mut |steps| {
        if json_mode {
            return;
        }
        shown.resize(steps.len(), StepStatus::Pending);
        for (i, s) in steps.iter().enumerate() {
            if shown[i] == s.status {
                continue;
            }
            shown[i] = s.status;
            let n = format!("[{}/{}]", i + 1, steps.len());
            match s.status {
                StepStatus::Running => println!("{n} {} ...", s.title),
                StepStatus::Done => println!("{n} {}: done. {}", s.title, s.message),
                StepStatus::Failed => println!("{n} {}: FAILED. {}", s.title, s.message),
                StepStatus::RolledBack => println!("{n} {}: undone", s.title),
                StepStatus::NotUndone => println!("{n} {}: NOT UNDONE. {}", s.title, s.message),
                StepStatus::Pending | StepStatus::NotRun => {}
            }
        }
    });
    install::setup_log::record_install(&plan.layout, &what, &report, Some(&outcome));
    if args.json {
        println!(
            "{}",
            json!({
                "checks": report.checks,
                "plan": plan,
                "steps": outcome.steps,
                "result": outcome.result,
                "agent_id": outcome.agent_id,
                "error": outcome.error,
                "fix": outcome.fix,
                "commands": outcome.commands,
                "agent": outcome.cloud_view,
            })
        );
    } else {
        println!();
        match outcome.result {
            InstallResult::Installed => {
                println!(
                    "Installed. Agent {} {}.",
                    outcome.agent_id.as_deref().unwrap_or("?"),
                    if plan.start {
                        "is running".to_string()
                    } else {
                        format!(
                            "is not started ({})",
                            plan.not_started_because.as_deref().unwrap_or("")
                        )
                    }
                );
                print_where(&plan);
                match (&outcome.cloud_view, &outcome.cloud_view_error) {
                    (Some(v), _) => println!(
                        "The cloud sees agent {} on {}: {}, {}{}.",
                        v.agent_id,
                        v.host,
                        role_word(v.role),
                        v.health,
                        if v.heard_from {
                            ""
                        } else {
                            ", not heard from since enrollment"
                        }
                    ),
                    (None, Some(e)) => {
                        println!("The cloud could not be asked about the agent: {e}")
                    }
                    _ => {}
                }
            }
            InstallResult::RolledBack => {
                let undone = if outcome.fully_undone() {
                    "Everything it did was undone"
                } else {
                    "Not everything it did could be undone (the steps marked NOT UNDONE say what is left)"
                };
                eprintln!(
                    "Install failed: {}\n{undone}; the connect key was not used.\nfix: {}",
                    outcome.error.as_deref().unwrap_or(""),
                    outcome.fix.as_deref().unwrap_or("")
                );
            }
            InstallResult::Incomplete => {
                eprintln!(
                    "Install not finished: {}\nThe agent is enrolled (or may be); nothing was undone.\nfix: {}",
                    outcome.error.as_deref().unwrap_or(""),
                    outcome.fix.as_deref().unwrap_or("")
                );
            }
        }
    }
    match outcome.result {
        InstallResult::Installed => EXIT_OK,
        InstallResult::RolledBack => EXIT_ROLLED_BACK,
        InstallResult::Incomplete => EXIT_INCOMPLETE,
    }
}

fn role_word(r: crate::cloud::api::Role) -> &'static str {
    match r {
        crate::cloud::api::Role::Primary => "primary",
        crate::cloud::api::Role::Standby => "standby",
    }
}

fn print_plan(plan: &Plan, existing: &Existing) {
    println!();
    match plan.mode {
        install::Mode::Fresh => println!("Plan: a new install."),
        install::Mode::Resume => {
            println!("Plan: finish the install that stopped before its enrollment completed.")
        }
        install::Mode::Upgrade => println!(
            "Plan: upgrade agent {} in place (its enrollment is kept; no connect key is needed).",
            plan.agent_id.as_deref().unwrap_or("?")
        ),
    }
    for n in &existing.notes {
        println!("  note: {n}");
    }
    for (i, s) in plan.steps.iter().enumerate() {
        println!("  {}. {}: {}", i + 1, s.title, s.detail);
    }
    if let Some(why) = &plan.not_started_because {
        println!("  The service is not started: {why}.");
    }
    println!("  Secrets: {}", plan.secret_store);
}

fn print_where(plan: &Plan) {
    let l = &plan.layout;
    println!("  config:  {}", l.real(&l.config).display());
    println!("  secrets: {}", plan.secret_store);
    println!(
        "  logs:    {}",
        crate::install::service::where_to_read_logs(&l.real(&l.log_dir), plan.service.name)
    );
    println!(
        "  service: {} ({})",
        plan.service.name,
        plan.service.command_line()
    );
}

fn unusable(message: &str, as_json: bool) -> i32 {
    if as_json {
        println!("{}", json!({"error": message}));
    } else {
        eprintln!("{message}");
    }
    EXIT_UNUSABLE
}

/// `review`: the installed config, its secrets shown only as where they are.
pub fn review(config: &Path, prefix: Option<&Path>, as_json: bool) -> i32 {
    let real = install::layout::staged(prefix, config);
    let installed = match install::config::read_installed(&real) {
        Ok(i) => i,
        Err(e) => {
            return unusable(
                &format!(
                    "{e}\nNothing is installed there; run ad-sync-setup install --answers FILE, or the wizard."
                ),
                as_json,
            );
        }
    };
    let dir = installed
        .answers
        .install
        .as_ref()
        .map(|i| i.dir.clone())
        .unwrap_or_else(install::layout::default_program_dir);
    let layout = install::layout::Layout::new(config, &dir, prefix);
    let existing = Existing::detect(&layout);
    let store = layout.store();
    let secrets: Vec<_> = crate::secrets::ALL
        .iter()
        .chain(
            crate::secrets::OPTIONAL
                .iter()
                .filter(|name| store.has(name)),
        )
        .map(|name| {
            let state = match store.read(name) {
                Ok(_) => "stored".to_string(),
                Err(e) => e.to_string(),
            };
            json!({
                "name": name,
                "path": store.stored_path(name).unwrap_or_else(|| store.path(name)),
                "protection": store.stored_as(name),
                "state": state,
            })
        })
        .collect();
    let text = std::fs::read_to_string(&real).unwrap_or_default();
    if as_json {
        println!(
            "{}",
            json!({
                "config": real,
                "mode": existing.mode,
                "agent_id": existing.record.as_ref().and_then(|r| r.agent_id.clone()),
                "enrollment": existing.record.as_ref().map(|r| r.state),
                "cloud": existing.record.as_ref().map(|r| r.cloud_url.clone()),
                "secret_store": install::plan::secret_store_words(&layout, store.in_use()),
                "secret_protection": store.in_use(),
                "secrets": secrets,
                "notes": existing.notes,
                "settings": installed.answers,
            })
        );
    } else {
        println!("Config {} (no secrets in it):\n", real.display());
        println!("{}", text.trim_end());
        println!();
        match &existing.record {
            Some(r) => println!(
                "Agent: {} ({:?}) with {}",
                r.agent_id.as_deref().unwrap_or("not enrolled yet"),
                r.state,
                r.cloud_url
            ),
            None => println!("Agent: not enrolled"),
        }
        println!(
            "Secrets: {}",
            install::plan::secret_store_words(&layout, store.in_use())
        );
        for s in &secrets {
            println!(
                "  {}: {}",
                s["name"].as_str().unwrap_or(""),
                s["state"].as_str().unwrap_or("")
            );
        }
        for n in &existing.notes {
            println!("note: {n}");
        }
    }
    EXIT_OK
}

pub fn uninstall(opts: &install::uninstall::UninstallOptions, dry_run: bool, as_json: bool) -> i32 {
    use install::uninstall::{Facts, plan};
    if dry_run {
        let facts = Facts::read(opts);
        let plan = plan(&facts, opts);
        if as_json {
            println!("{}", json!({"plan": plan, "result": "planned"}));
        } else {
            println!(
                "Plan: remove agent {}.",
                plan.agent_id.as_deref().unwrap_or("(none enrolled)")
            );
            for (i, s) in plan.steps.iter().enumerate() {
                println!("  {}. {}: {}", i + 1, s.title, s.detail);
            }
            for k in &plan.kept {
                println!("  left in place: {k}");
            }
            println!("Nothing was removed (--dry-run).");
        }
        return EXIT_OK;
    }
    let mut shown = 0;
    let out = install::uninstall::uninstall(opts, &mut |steps| {
        if as_json {
            return;
        }
        // One line per step as it finishes, numbered in the plan's order.
        for s in &steps[shown..] {
            shown += 1;
            println!(
                "[{shown}] {}: {}. {}",
                s.title,
                if s.ok { "done" } else { "COULD NOT" },
                s.message
            );
        }
    });
    if as_json {
        println!("{}", json!(out));
    } else {
        for k in &out.plan.kept {
            println!("left in place: {k}");
        }
        for c in &out.commands {
            println!("ran: {c}");
        }
        if let Some(e) = &out.error {
            eprintln!(
                "Uninstall stopped: {e}\nfix: {}",
                out.fix.as_deref().unwrap_or("")
            );
        } else if out.complete {
            println!("Uninstalled.");
        } else {
            eprintln!(
                "Uninstalled, except the steps marked COULD NOT above: they say what is left and what to do."
            );
        }
    }
    if out.error.is_some() || !out.complete {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

/// `restart [--if-installed]`, recorded in the setup log.
pub fn restart(config: &Path, if_installed: bool) -> i32 {
    let layout = install::restart::installed_layout(config, None);
    let (line, code) = match install::restart::restart(&layout) {
        Ok(install::restart::Restarted::Running) => {
            ("the agent service runs again".to_string(), EXIT_OK)
        }
        Ok(install::restart::Restarted::NothingInstalled(why)) if if_installed => {
            (format!("nothing to restart: {why}"), EXIT_OK)
        }
        Ok(install::restart::Restarted::NothingInstalled(why)) => (
            format!(
                "the agent service was not restarted: {why}. Install it first (the wizard, or ad-sync-setup install --answers FILE)."
            ),
            EXIT_FAILED,
        ),
        Err(e) => (
            format!(
                "the agent service did not start: {e}. Look at the agent's log ({}), fix the cause, then run ad-sync-setup restart again.",
                install::service::where_to_read_logs(
                    &layout.real(&layout.log_dir),
                    install::layout::SERVICE_NAME
                )
            ),
            EXIT_FAILED,
        ),
    };
    install::setup_log::append(&layout, "restart", std::slice::from_ref(&line));
    if code == EXIT_OK {
        println!("{line}");
    } else {
        eprintln!("{line}");
    }
    code
}
