//! The `ad-sync-setup` command line: argument parsing (clap) and printing. Every decision is
//! made in the library (`dn`, `answers`, `preflight`); this only formats it.
//!
//! Exit codes: 0 = valid / no check failed / installed; 1 = invalid DN / at least one check
//! failed (nothing was installed); 2 = the command could not run (bad arguments, unreadable or
//! invalid answers file); 3 = an install step failed and everything was undone (the connect key
//! is unused); 4 = enrolled, but a later step failed (re-run the same install to finish).

mod install;
mod validate_key;

pub use install::{EXIT_INCOMPLETE, EXIT_ROLLED_BACK};

use crate::answers::Answers;
use crate::dn::Dn;
use crate::preflight::{self, Report, Status};
use clap::{Parser, Subcommand};
use serde_json::json;
use std::path::PathBuf;

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_UNUSABLE: i32 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "ad-sync-setup",
    version,
    about = "Set up the ad-sync agent: check every value against the live domain controller before anything is written.",
    after_help = "Exit codes: 0 valid / no check failed / installed; 1 invalid / a check failed (nothing installed); 2 the command could not run (bad arguments or answers file); 3 an install step failed and was undone (the key is unused); 4 enrolled but not finished (run the same install again)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no subcommand: the installed config the wizard reviews when it exists
    /// (default /etc/ad-sync/agent.toml; %ProgramData%\ad-sync\agent.toml on Windows).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// With no subcommand: the wizard's Install stages every path under DIR instead of `/`
    /// (nothing is registered with the system), to try the wizard or build a package.
    #[arg(long = "prefix", value_name = "DIR")]
    pub stage: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a Root User container DN (comma or semicolon form) and print its normalised forms.
    ValidateDn {
        /// The DN, e.g. 'CN=Users;DC=example;DC=com' (quote it: `;` ends a shell command).
        dn: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check a connect key: its format and checksum offline, then with the cloud (never using it up).
    ///
    /// Exit 0 when valid, 1 when the key is not (malformed, unknown, used, expired, wrong
    /// domain), 2 when it could not be checked. A key on the command line is visible to other
    /// users of this machine while the command runs: prefer `-` (standard input) or --key-file.
    ValidateKey {
        /// The key (ADS1-...), or `-` to read it from standard input.
        #[arg(required_unless_present = "key_file")]
        key: Option<String>,
        /// Read the key from this file instead.
        #[arg(long, value_name = "FILE", conflicts_with = "key")]
        key_file: Option<PathBuf>,
        /// The cloud's base URL (https://...).
        #[arg(long, value_name = "URL", required_unless_present = "offline")]
        cloud: Option<String>,
        /// A PEM file with the CA that signed the cloud's certificate (besides the system roots).
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
        /// The AD domain the key is meant for (e.g. DC=example,DC=com); a key for another
        /// domain instance is then `wrong_domain`.
        #[arg(long, value_name = "DOMAIN_DN")]
        domain: Option<String>,
        /// Check only the format and checksum; no network call.
        #[arg(long)]
        offline: bool,
        /// Seconds allowed for the cloud to answer.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
        timeout: u64,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Install (or upgrade) the agent unattended: every check, then the plan, step by step.
    ///
    /// Refuses to write anything when a check fails. A step that fails before the agent is
    /// enrolled undoes everything (the connect key stays unused); after enrollment nothing is
    /// undone and running the same command again finishes the job. Over an existing install it
    /// upgrades in place: same agent, no connect key needed, same service account.
    Install {
        /// The answers file (TOML; see assets/answers.example.toml).
        #[arg(long, value_name = "FILE")]
        answers: PathBuf,
        /// Stage every path under DIR instead of / (packaging, tests); the service is enabled
        /// inside DIR, never started.
        #[arg(long, value_name = "DIR")]
        prefix: Option<PathBuf>,
        /// Write and enable the service, but do not start it (also when systemd is not running).
        #[arg(long)]
        no_start: bool,
        /// Run the checks and print the plan; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print {"checks":[...],"plan":{...},"steps":[...],"result":...} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the installed config (no secret is in it), where its secrets are and the agent.
    Review {
        /// Read the install staged under DIR.
        #[arg(long, value_name = "DIR")]
        prefix: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Deregister the agent from the cloud, stop and remove the service, remove its secrets
    /// (and its config, unless --keep-config).
    Uninstall {
        /// Keep agent.toml and its backups (to install again later with the same settings).
        #[arg(long)]
        keep_config: bool,
        /// Remove locally even when the cloud cannot be reached to deregister the agent.
        #[arg(long)]
        force: bool,
        /// Remove the install staged under DIR.
        #[arg(long, value_name = "DIR")]
        prefix: Option<PathBuf>,
        /// Print what would be removed, and what left in place; remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print {"plan":{...},"steps":[...],...} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the proxy this machine uses, as the wizard proposes it for `[cloud] proxy`: the
    /// session's HTTPS_PROXY/ALL_PROXY, then on Windows the machine's WinHTTP proxy (netsh
    /// winhttp) and Internet Options. The service uses none of them unless the config names it.
    FindProxy {
        /// Print {"proxy":...,"source":...,"username":...} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start the agent service again (or restart it) so it runs the programs now in place; the
    /// MSI runs this after an upgrade. Exit 0 when it runs; with --if-installed also when no
    /// agent is configured or no service registered (nothing to start), otherwise 1 then.
    Restart {
        /// Succeed, doing nothing, when there is no configured agent service.
        #[arg(long)]
        if_installed: bool,
    },
    /// Print the systemd unit the install writes for the config at --config (default
    /// /etc/ad-sync/agent.toml) and the program folder DIR; packaging ships it.
    ServiceUnit {
        /// The folder holding ad-sync-agent.
        #[arg(long, value_name = "DIR")]
        program_dir: Option<PathBuf>,
    },
    /// List the containers (or groups) under a DN as the service account sees them: the
    /// wizard's directory tree on the command line, for Server Core and for scripts.
    ///
    /// Reads one level, over the same connection and logon as `check`; writes nothing.
    Browse {
        /// The answers file (TOML; see assets/answers.example.toml): the DC, the connection
        /// security and the service account to read as.
        #[arg(long, value_name = "FILE")]
        answers: PathBuf,
        /// The container to list (comma or semicolon form); the domain itself when absent.
        #[arg(long, value_name = "DN")]
        under: Option<String>,
        /// List groups too (what the sync group may be), not only OUs and containers.
        #[arg(long)]
        groups: bool,
        /// List groups too as AD as a source's scope groups may be (`[source] groups`: any
        /// security group, built-in ones included), not as the sync group may be.
        #[arg(long, conflicts_with = "groups")]
        scope_groups: bool,
        /// Only children whose name contains this text (the DC filters).
        #[arg(long, value_name = "TEXT", default_value = "")]
        name: String,
        /// Print {"base":...,"children":[...],"more":...} as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run every preflight check for an answers file against the live domain controller.
    Check {
        /// The answers file (TOML; see assets/answers.example.toml).
        #[arg(long, value_name = "FILE")]
        answers: PathBuf,
        /// Print {"checks":[...]} as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        None => {
            let config = cli
                .config
                .unwrap_or_else(ad_sync_wizard::default_config_path);
            let mut options = ad_sync_wizard::Options::live(config);
            options.prefix = cli.stage;
            options.bench_page = std::env::var("AD_SYNC_WIZARD_BENCH_PAGE").ok();
            options.bench = std::env::var("AD_SYNC_WIZARD_BENCH")
                .ok()
                .and_then(|v| v.parse().ok());
            match ad_sync_wizard::run(options) {
                Ok(()) => EXIT_OK,
                Err(e) => {
                    eprintln!("ad-sync-setup: {e}");
                    EXIT_UNUSABLE
                }
            }
        }
        Some(Command::Install {
            answers,
            prefix,
            no_start,
            dry_run,
            json,
        }) => install::install(install::InstallArgs {
            answers,
            config: cli
                .config
                .unwrap_or_else(crate::install::layout::default_config_path),
            prefix,
            no_start,
            dry_run,
            json,
        }),
        Some(Command::Review { prefix, json }) => install::review(
            &cli.config
                .unwrap_or_else(crate::install::layout::default_config_path),
            prefix.as_deref(),
            json,
        ),
        Some(Command::Uninstall {
            keep_config,
            force,
            prefix,
            dry_run,
            json,
        }) => install::uninstall(
            &crate::install::uninstall::UninstallOptions {
                config: cli
                    .config
                    .unwrap_or_else(crate::install::layout::default_config_path),
                prefix,
                keep_config,
                force,
                source_dir: crate::install::Options::new(PathBuf::new()).source_dir,
            },
            dry_run,
            json,
        ),
        Some(Command::FindProxy { json }) => find_proxy(json),
        Some(Command::Restart { if_installed }) => install::restart(
            &cli.config
                .unwrap_or_else(crate::install::layout::default_config_path),
            if_installed,
        ),
        Some(Command::ServiceUnit { program_dir }) => {
            let config = cli
                .config
                .unwrap_or_else(crate::install::layout::default_config_path);
            let dir = program_dir.unwrap_or_else(crate::install::layout::default_program_dir);
            let layout = crate::install::layout::Layout::new(&config, &dir, None);
            let protection = layout.store().in_use();
            print!(
                "{}",
                crate::install::service::systemd_unit(&layout, &[], &[], protection)
            );
            EXIT_OK
        }
        Some(Command::ValidateDn { dn, json }) => validate_dn(&dn, json),
        Some(Command::Check { answers, json }) => check(&answers, json),
        Some(Command::Browse {
            answers,
            under,
            groups,
            scope_groups,
            name,
            json,
        }) => {
            use crate::directory::browse::Offer;
            let offer = match (groups, scope_groups) {
                (true, _) => Offer::Groups,
                (_, true) => Offer::ScopeGroups,
                _ => Offer::Containers,
            };
            browse(&answers, under.as_deref(), offer, &name, json)
        }
        Some(Command::ValidateKey {
            key,
            key_file,
            cloud,
            ca,
            domain,
            offline,
            timeout,
            json,
        }) => validate_key::validate_key(validate_key::KeyArgs {
            key,
            key_file,
            cloud: if offline { None } else { cloud },
            ca,
            domain,
            timeout: std::time::Duration::from_secs(timeout),
            json,
        }),
    }
}

fn validate_dn(input: &str, as_json: bool) -> i32 {
    match Dn::parse_container(input) {
        Ok(p) => {
            if as_json {
                println!(
                    "{}",
                    json!({
                        "valid": true,
                        "dn": p.dn.to_comma_form(),
                        "semicolon": p.dn.to_semicolon_form(),
                        "domain": p.dn.domain(),
                        "warnings": p.notes,
                    })
                );
            } else {
                println!("valid: {}", p.dn.to_comma_form());
                println!("semicolon form: {}", p.dn.to_semicolon_form());
                if let Some(d) = p.dn.domain() {
                    println!("domain: {d}");
                }
                for n in &p.notes {
                    println!("note: {n}");
                }
            }
            EXIT_OK
        }
        Err(e) => {
            if as_json {
                println!(
                    "{}",
                    json!({"valid": false, "error": e.message, "position": e.position})
                );
            } else {
                eprintln!("Root User container `{input}`: {e}");
                eprintln!("  {input}");
                eprintln!("  {}^", " ".repeat(e.position.saturating_sub(1)));
            }
            EXIT_FAILED
        }
    }
}

fn check(path: &std::path::Path, as_json: bool) -> i32 {
    let answers = match Answers::load(path) {
        Ok(a) => a,
        Err(e) => {
            if as_json {
                println!("{}", json!({"error": e.to_string()}));
            } else {
                eprintln!("{e}");
            }
            return EXIT_UNUSABLE;
        }
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let report = runtime.block_on(preflight::run(&answers));
    if as_json {
        println!("{}", json!({ "checks": report.checks }));
    } else {
        print!("{}", render_text(&report));
    }
    if report.any_failed() {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

fn browse(
    path: &std::path::Path,
    under: Option<&str>,
    offer: crate::directory::browse::Offer,
    name: &str,
    as_json: bool,
) -> i32 {
    use crate::directory::browse::LEVEL_LIMIT;
    let say = |message: String| {
        if as_json {
            println!("{}", json!({ "error": message }));
        } else {
            eprintln!("{message}");
        }
    };
    let answers = match Answers::load(path) {
        Ok(a) => a,
        Err(e) => {
            say(e.to_string());
            return EXIT_UNUSABLE;
        }
    };
    let base = match under.map(Dn::parse_container).transpose() {
        Ok(dn) => dn.map(|p| p.dn.to_comma_form()),
        Err(e) => {
            say(format!(
                "--under `{}`: {e}; give the container's DN in comma or semicolon form",
                under.unwrap_or_default()
            ));
            return EXIT_UNUSABLE;
        }
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let level = match runtime.block_on(preflight::browse::level(
        &answers,
        base.as_deref(),
        offer,
        name,
        LEVEL_LIMIT,
    )) {
        Ok(l) => l,
        Err(e) => {
            say(e);
            return EXIT_FAILED;
        }
    };
    if as_json {
        let children: Vec<_> = level
            .nodes
            .iter()
            .map(|n| {
                json!({
                    "dn": n.dn,
                    "name": n.name,
                    "kind": n.kind.words(),
                    "unpickable": n.unpickable,
                })
            })
            .collect();
        println!(
            "{}",
            json!({ "base": level.base, "children": children, "more": level.more })
        );
    } else {
        println!("{}", level.base);
        for n in &level.nodes {
            match &n.unpickable {
                Some(why) => println!("  {}  ({}; cannot be chosen: {why})", n.dn, n.kind.words()),
                None => println!("  {}  ({})", n.dn, n.kind.words()),
            }
        }
        if level.more {
            println!("  ... more than {LEVEL_LIMIT} children: narrow the list with --name TEXT");
        }
    }
    EXIT_OK
}

/// The text report: one line per check, then indented detail and fix for anything not passed.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    let width = report.checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
    for c in &report.checks {
        out.push_str(&format!(
            "{}  {:width$}  {}\n",
            c.status.label(),
            c.id,
            c.summary
        ));
        if c.status != Status::Pass && c.status != Status::Skip {
            for line in c.detail.lines().filter(|l| !l.is_empty()) {
                out.push_str(&format!("      {:width$}  {line}\n", ""));
            }
            if !c.fix.is_empty() {
                out.push_str(&format!("      {:width$}  fix: {}\n", "", c.fix));
            }
        }
    }
    let count = |s: Status| report.checks.iter().filter(|c| c.status == s).count();
    out.push_str(&format!(
        "\nResult: {} pass, {} warn, {} fail, {} skip\n",
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail),
        count(Status::Skip)
    ));
    out
}

/// The network runtime the commands share; on failure, the exit code (after saying why).
pub(crate) fn runtime() -> Result<Rt, i32> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map(|rt| Rt(Some(rt)))
        .map_err(|e| {
            eprintln!("cannot start the network runtime: {e}");
            EXIT_UNUSABLE
        })
}

/// The commands' network runtime. Dropped, it waits at most a second for its blocking threads:
/// a lookup its timeout abandoned (getaddrinfo cannot be cancelled) keeps running on one, and
/// tokio's own drop would wait for it however long it takes. The command has its answer by
/// then; nothing it left behind may keep the process alive.
pub(crate) struct Rt(Option<tokio::runtime::Runtime>);

impl Rt {
    pub(crate) fn block_on<F: std::future::Future>(&self, work: F) -> F::Output {
        match &self.0 {
            Some(rt) => rt.block_on(work),
            None => unreachable!("the runtime is taken only by drop"),
        }
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
        }
    }
}

/// `find-proxy`: what the wizard would propose for `[cloud] proxy`.
fn find_proxy(as_json: bool) -> i32 {
    let found = crate::cloud::system_proxy::detect();
    if as_json {
        let v = match &found {
            Ok(Some(f)) => {
                serde_json::json!({"proxy": f.url, "source": f.source, "username": f.username})
            }
            Ok(None) => serde_json::json!({"proxy": null}),
            Err(why) => serde_json::json!({"proxy": null, "note": why}),
        };
        println!("{v}");
    } else {
        match &found {
            Ok(Some(f)) => {
                println!("{} (from {})", f.url, f.source);
                println!(
                    "For the service, put it in the answers file:\n[cloud]\nproxy = \"{}\"",
                    f.url
                );
                if let Some(u) = &f.username {
                    println!(
                        "proxy_username = \"{u}\"\nproxy_password_file = \"...\"  # the password, never inline"
                    );
                }
            }
            Ok(None) => println!("No proxy is set on this machine: the cloud is reached directly."),
            Err(why) => println!("{why}."),
        }
    }
    EXIT_OK
}
