//! `ad-sync-agent`: the service. `run --config FILE` under systemd (or by hand); on Windows the
//! Service Control Manager starts `service --config FILE`, which runs the same loop under the
//! SCM dispatcher.

use ad_sync_agent::AgentError;
use ad_sync_agent::sync::RunError;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "ad-sync-agent",
    version,
    about = "The ad-sync agent: mirrors the cloud directory into Active Directory."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args, Clone)]
struct RunArgs {
    /// The installed config (secrets come from the store beside it, or systemd's credentials).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Check in once; on the primary, apply every pending change (and --resync), then exit.
    /// Prints the role and what was done.
    #[arg(long)]
    once: bool,
    /// Change nothing: log every operation a run would make (implies --once).
    #[arg(long)]
    dry_run: bool,
    /// Compare everything the agent manages with AD now (also done at start and every 6 hours).
    #[arg(long)]
    resync: bool,
    /// Allow this many deletions in this run, above the deletion threshold (with --once).
    #[arg(long, value_name = "N", requires = "once")]
    allow_deletions: Option<usize>,
    /// The agent's state folder (default: $STATE_DIRECTORY, else /var/lib/ad-sync, or `state`
    /// beside the config on Windows).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Where agent.log goes, rolled at 10 MB, kept 30 days (default: $LOGS_DIRECTORY, else
    /// /var/log/ad-sync, or `logs` beside the config on Windows). `-` logs to standard error only.
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
    /// AD operations in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
    /// With --once or --dry-run: print what was done as one JSON document, and the progress
    /// as JSON lines (`{"progress": {...}}`) on standard error.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args, Clone)]
struct ImportArgs {
    /// The installed config.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Only this group's members (nested included) and the group itself.
    #[arg(long, value_name = "DN")]
    group: Option<String>,
    /// Change nothing: say what would be imported, linked or refused.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as one JSON document, and the progress as JSON lines
    /// (`{"progress": {...}}`) on standard error.
    #[arg(long)]
    json: bool,
    /// Import without asking. On a terminal, `import` first previews and asks for a yes with
    /// the counts; elsewhere (a script, the wizard) it never asks.
    #[arg(long)]
    yes: bool,
    /// Where agent.log goes (`-`: standard error only; default as for `run`).
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
    /// The agent's state, where the links the import makes are recorded (default as for
    /// `run`).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args, Clone)]
struct ResyncArgs {
    /// The installed config.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The agent's state folder; default as for `run`.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args, Clone)]
struct ExportArgs {
    /// The installed config.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Export the users inside this container (repeat for several; default: the Root User
    /// container).
    #[arg(long, value_name = "DN")]
    container: Vec<String>,
    /// A protected or privileged account to export all the same (its sAMAccountName; repeat
    /// for several). Never the service account, krbtgt, built-ins or computers.
    #[arg(long, value_name = "SAM")]
    name: Vec<String>,
    /// Run the full reconciliation now: read the whole scope and compare it with what the
    /// cloud holds from AD (it also runs on the first export, daily, and after a scope or
    /// mapping change).
    #[arg(long)]
    resync: bool,
    /// Allow this many suspensions in this run, above the deletion threshold.
    #[arg(long, value_name = "N")]
    allow_deletions: Option<usize>,
    /// Print the report as one JSON document.
    #[arg(long)]
    json: bool,
    /// The agent's state (held suspensions, the threshold's record); default as for `run`.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Where agent.log goes (`-`: standard error only; default as for `run`).
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args, Clone)]
struct PendingArgs {
    /// The installed config.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Approve these held disconnections (cloud ids, as listed) and apply them now, once.
    #[arg(long, value_name = "ID", num_args = 1.., conflicts_with = "approve_all")]
    approve: Vec<String>,
    /// Approve every held disconnection and apply them now, once. Needs --expect.
    #[arg(long, requires = "expect")]
    approve_all: bool,
    /// With --approve-all: the count or the digest `pending` printed for the list you
    /// reviewed; a list that changed since is not approved.
    #[arg(long, value_name = "N|DIGEST")]
    expect: Option<ad_sync_agent::state::Expect>,
    /// Print the list (and what an approval did) as one JSON document.
    #[arg(long)]
    json: bool,
    /// The agent's state folder (default as for `run`).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Where agent.log goes (`-`: standard error only; default as for `run`).
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args, Clone)]
struct StatusArgs {
    /// The installed config.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Print the status as one JSON document.
    #[arg(long)]
    json: bool,
    /// Do not ask the cloud for its view of this agent (the state alone).
    #[arg(long)]
    offline: bool,
    /// The agent's state folder (default as for `run`).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent in the foreground (what the systemd unit starts).
    Run(RunArgs),
    /// Import the users and security groups under the Root User container into the cloud,
    /// each linked to its AD object (which the agent then manages). Safe to run again.
    Import(ImportArgs),
    /// AD as a source: send what changed in AD's users, groups and contacts since the cloud's
    /// cursor to the cloud, once (DirSync, or uSNChanged where the DC refuses it, resumed from
    /// the cursor the cloud keeps). What was deleted in AD or left the scope is suspended or
    /// marked deleted in the cloud and kept for the domain's retention (30 days by default).
    Export(ExportArgs),
    /// AD as a source: ask for a full reconciliation of AD with the cloud at the next export
    /// (the running service's next cycle; no restart). What the wizard's review mode asks.
    Resync(ResyncArgs),
    /// List the disconnections the deletion threshold holds (what each would delete or
    /// disable, and why); `--approve ID...` or `--approve-all` applies them once.
    Pending(PendingArgs),
    /// How the agent is doing: its role, last run and last success, what it manages, the
    /// disconnections held, the changes it failed and why, and the cloud's view of it. Exit 0
    /// when all is well, 1 when something waits for the administrator, 2 when it cannot sync.
    Status(StatusArgs),
    /// Run under the Windows Service Control Manager (the SCM starts this; not for a shell).
    #[cfg(windows)]
    Service {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

/// The exit codes, one per kind of error (`exit_code`). `run --once`: OK done (or this agent
/// is the standby); RETRY the cloud, the DC or the state could not be used this time;
/// CANNOT_START the config, a secret, the state or the runtime cannot be used; THRESHOLD
/// disconnections are held by the deletion threshold (the rest was applied); CHANGES_FAILED some changes failed (and were reported to
/// the cloud). `run` as a service exits only with OK or CANNOT_START.
mod exit {
    pub const OK: i32 = 0;
    pub const RETRY: i32 = 1;
    pub const CANNOT_START: i32 = 2;
    pub const THRESHOLD: i32 = 3;
    pub const CHANGES_FAILED: i32 = 4;
}

/// The one place an error becomes an exit code (after it was logged once).
fn exit_code(e: &AgentError) -> i32 {
    match e {
        AgentError::Setup(_) | AgentError::State(_) => exit::CANNOT_START,
        AgentError::Heartbeat(_) => exit::RETRY,
        AgentError::Run(RunError::Unavailable(_) | RunError::State(_)) => exit::RETRY,
    }
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run(args) => {
            let log_dir = match &args.log_dir {
                Some(d) if d.as_os_str() == "-" => None,
                Some(d) => Some(d.clone()),
                None => Some(ad_sync_agent::default_log_dir(&args.config)),
            };
            if let Some(w) = ad_sync_agent::logs::init(log_dir.as_deref()) {
                tracing::warn!("{w}; logging to standard error only");
            }
            run(&args)
        }
        Command::Import(args) => {
            init_logs(&args.config, args.log_dir.as_deref());
            import(&args)
        }
        Command::Pending(args) => {
            init_logs(&args.config, args.log_dir.as_deref());
            pending(&args)
        }
        Command::Export(args) => {
            init_logs(&args.config, args.log_dir.as_deref());
            export(&args)
        }
        Command::Status(args) => status(&args),
        Command::Resync(args) => {
            let dir = args
                .state_dir
                .clone()
                .unwrap_or_else(|| ad_sync_agent::default_state_dir(&args.config));
            match ad_sync_agent::export::request_resync(&dir) {
                Ok(()) => {
                    println!(
                        "A full reconciliation of AD with the cloud is requested: the agent runs it at its next export (within a minute when the service runs), then ad-sync-agent status shows it."
                    );
                    exit::OK
                }
                Err(e) => {
                    eprintln!("error: {e}; run this as the administrator who installed ad-sync");
                    exit::CANNOT_START
                }
            }
        }
        #[cfg(windows)]
        Command::Service { config } => {
            let dir = ad_sync_agent::default_log_dir(&config);
            if let Some(w) = ad_sync_agent::logs::init(Some(&dir)) {
                tracing::warn!("{w}; logging to standard error only");
            }
            windows::dispatch(config)
        }
    };
    std::process::exit(code);
}

/// Logs to `log_dir` (`-`: standard error only; default: the installed layout's).
fn init_logs(config: &std::path::Path, log_dir: Option<&std::path::Path>) {
    let dir = match log_dir {
        Some(d) if d.as_os_str() == "-" => None,
        Some(d) => Some(d.to_path_buf()),
        None => Some(ad_sync_agent::default_log_dir(config)),
    };
    if let Some(w) = ad_sync_agent::logs::init(dir.as_deref()) {
        tracing::warn!("{w}; logging to standard error only");
    }
}

/// `pending`: OK when nothing is held (after an approval: when nothing is held any more),
/// THRESHOLD when disconnections are held, CHANGES_FAILED when an approved one failed.
fn pending(args: &PendingArgs) -> i32 {
    let (agent, rt) = match start(&args.config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let opts = ad_sync_agent::RunOptions {
        state_dir: args
            .state_dir
            .clone()
            .unwrap_or_else(|| ad_sync_agent::default_state_dir(&args.config)),
        concurrency: 8,
        ..Default::default()
    };
    let mut state = match open_state(&agent, &opts) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let approving = args.approve_all || !args.approve.is_empty();
    let mut applied = None;
    if approving {
        let ids = (!args.approve_all).then_some(args.approve.as_slice());
        // The approval is written while no cycle runs on this state (the service's included).
        let dir = opts.state_dir.clone();
        let lock = match rt.block_on(ad_sync_agent::state::CycleLock::acquire(
            &dir,
            std::time::Duration::from_secs(120),
        )) {
            Ok(Some(l)) => l,
            Ok(None) => {
                eprintln!(
                    "error: the agent's state is busy (the service is running a cycle) for more than 120 s; nothing was approved. Try again"
                );
                return exit::RETRY;
            }
            Err(e) => {
                eprintln!("error: {e}");
                return exit::CANNOT_START;
            }
        };
        let approved = state.approve(ids, args.expect.as_ref());
        drop(lock);
        match approved {
            Ok(ids) => tracing::info!("approved by the administrator: {}", ids.join(", ")),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::CANNOT_START;
            }
        }
        applied = Some(rt.block_on(async {
            match agent.heartbeat(None).await {
                Ok((ad_sync_core::cloud::api::Role::Primary, _)) => {
                    // Each direction applies its own approvals: the cloud → AD planner its
                    // disconnections, the export its suspensions in the cloud.
                    let direction = agent.answers.sync.direction;
                    let mut r = if direction.to_ad() {
                        agent.drain(&mut state, &opts).await.map_err(AgentError::Run)?
                    } else {
                        ad_sync_agent::CycleReport::default()
                    };
                    if direction.from_ad() {
                        let e = agent
                            .export_and_record(
                                &mut state,
                                &ad_sync_agent::export::ExportOptions::default(),
                            )
                            .await
                            .map_err(|e| {
                                AgentError::Run(ad_sync_agent::sync::RunError::Unavailable(
                                    format!("sending AD's changes to the cloud: {e}"),
                                ))
                            })?;
                        r.held += e.held;
                        r.failed += e.refused.len();
                    }
                    Ok(r)
                }
                Ok(_) => Err(AgentError::Setup(
                    "this agent is the standby: the approval is recorded in its state, but only the primary applies changes; run this on the primary".into(),
                )),
                Err(e) => Err(e),
            }
        }));
    }
    // Both directions' held lists: the cloud → AD disconnections and AD as a source's
    // suspensions in the cloud.
    let held = match state.held_all() {
        Ok(h) => h,
        Err(e) => {
            let e = AgentError::from(e);
            tracing::error!("{e}");
            return exit_code(&e);
        }
    };
    let last = state.last_run();
    let run_error = match &applied {
        Some(Err(e)) => Some(e.to_string()),
        _ => None,
    };
    let failed = match &applied {
        Some(Ok(r)) => r.failed,
        _ => 0,
    };
    if args.json {
        let j = serde_json::json!({
            "count": held.len(),
            "digest": ad_sync_agent::state::digest(&held),
            "held": held.iter().map(|h| serde_json::json!({
                "id": h.id, "kind": h.kind, "name": h.name, "dn": h.dn, "action": h.action,
                "what": h.what, "why": h.why,
                "since": ad_sync_core::time_fmt::unix_to_rfc3339(h.since),
                "approved": h.approved,
            })).collect::<Vec<_>>(),
            "last_run": {
                "at": (last.at > 0).then(|| ad_sync_core::time_fmt::unix_to_rfc3339(last.at)),
                "held": last.held,
                "failed": last.failed,
                "last_success": (last.last_success > 0).then(|| ad_sync_core::time_fmt::unix_to_rfc3339(last.last_success)),
            },
            "approval": applied.as_ref().map(|r| match r {
                Ok(r) => serde_json::json!({"operations": r.operations, "failed": r.failed, "held": r.held}),
                Err(e) => serde_json::json!({"error": e.to_string()}),
            }),
        });
        println!("{j:#}");
    } else {
        if let Some(Ok(r)) = &applied {
            println!(
                "approved and applied: operations: {}, failed: {}; still held: {}",
                r.operations, r.failed, r.held
            );
        }
        if held.is_empty() {
            println!("nothing is held by the deletion budget");
        } else {
            println!(
                "{} disconnections held by the deletion budget (nothing was done to these objects); digest {}:",
                held.len(),
                ad_sync_agent::state::digest(&held)
            );
            for h in &held {
                println!(
                    "{} {} {} ({}): would {} {}; held since {}{}\n    why: {}",
                    h.id,
                    h.kind,
                    h.name,
                    h.dn,
                    h.action,
                    h.dn,
                    ad_sync_core::time_fmt::unix_to_rfc3339(h.since),
                    if h.approved { ", approved" } else { "" },
                    h.why
                );
            }
            println!(
                "approve some with `ad-sync-agent pending --config {} --approve ID...`, or all of this list with `--approve-all --expect {}`",
                args.config.display(),
                ad_sync_agent::state::digest(&held)
            );
        }
    }
    if let Some(e) = run_error {
        eprintln!("error: {e}");
        return exit::RETRY;
    }
    if failed > 0 {
        exit::CHANGES_FAILED
    } else if held.is_empty() {
        exit::OK
    } else {
        exit::THRESHOLD
    }
}

/// `status`: reads, never writes; logs nothing (it is what an administrator runs to look).
fn status(args: &StatusArgs) -> i32 {
    use ad_sync_core::status::{AgentStatus, Light};
    let layout =
        ad_sync_core::install::layout::Layout::new(&args.config, std::path::Path::new(""), None);
    let mut out = AgentStatus::default();
    match ad_sync_core::install::enrollment::Record::read(&layout.enrollment) {
        Ok(Some(r)) => {
            out.agent_id = r.agent_id;
            out.cloud_url = Some(r.cloud_url);
        }
        Ok(None) => {}
        Err(e) => out.notes.push(e),
    }
    let agent = match ad_sync_agent::Agent::start(&args.config) {
        Ok(a) => Some(a),
        Err(e) => {
            out.notes.push(format!("the agent cannot start: {e}"));
            None
        }
    };
    out.direction = agent
        .as_ref()
        .map(|a| a.answers.sync.direction.as_str().to_string());
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| ad_sync_agent::default_state_dir(&args.config));
    ad_sync_agent::status::from_state(
        &state_dir,
        agent.as_ref().map(|a| a.binding()).as_ref(),
        &mut out,
    );
    if let (Some(agent), false) = (&agent, args.offline) {
        match runtime() {
            Ok(rt) => match rt.block_on(ad_sync_agent::status::cloud_view(agent)) {
                Ok(v) => out.cloud_view = Some(v),
                Err(e) => out.cloud_view_error = Some(e),
            },
            Err(e) => out.cloud_view_error = Some(e),
        }
    }
    ad_sync_agent::status::conclude(&mut out);
    if args.json {
        match serde_json::to_string_pretty(&out) {
            Ok(j) => println!("{j}"),
            Err(e) => {
                eprintln!("error: cannot write the status as JSON: {e}");
                return exit::CANNOT_START;
            }
        }
    } else {
        println!("{}", ad_sync_agent::status::text(&out));
    }
    match out.light {
        Light::Green => 0,
        Light::Amber => 1,
        Light::Red => 2,
    }
}

/// This enrollment's state (a note on standard error when an older one was set aside), or the
/// exit code when it cannot be opened (logged).
fn open_state(
    agent: &ad_sync_agent::Agent,
    opts: &ad_sync_agent::RunOptions,
) -> Result<ad_sync_agent::state::State, i32> {
    match agent.open_state(opts) {
        Ok((s, note)) => {
            if let Some(n) = note {
                eprintln!("warning: {n}");
            }
            Ok(s)
        }
        Err(e) => {
            let e = AgentError::from(e);
            tracing::error!("{e}");
            Err(exit_code(&e))
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

fn options(args: &RunArgs) -> ad_sync_agent::RunOptions {
    use ad_sync_agent::progress::{Meter, Sink};
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| ad_sync_agent::default_state_dir(&args.config));
    // The state folder's file is what `status` (and the wizard) read while a run is under way;
    // a dry run is nobody's run but this terminal's.
    let mut sinks = Vec::new();
    if !args.dry_run {
        sinks.push(Sink::File(state_dir.clone()));
    }
    if args.once || args.dry_run {
        sinks.push(if args.json {
            Sink::Json
        } else {
            Sink::Terminal
        });
    }
    ad_sync_agent::RunOptions {
        dry_run: args.dry_run,
        resync: args.resync,
        allow_deletions: args.allow_deletions,
        state_dir,
        concurrency: usize::from(args.concurrency),
        meter: Meter::new(sinks),
    }
}

/// The agent from its installed config, and the runtime it runs on; the exit code when either
/// cannot be had (logged).
fn start(config: &std::path::Path) -> Result<(ad_sync_agent::Agent, tokio::runtime::Runtime), i32> {
    let agent = ad_sync_agent::Agent::start(config).map_err(|e| {
        tracing::error!("{e}");
        exit_code(&e)
    })?;
    let rt = runtime().map_err(|e| {
        tracing::error!("{e}");
        exit::CANNOT_START
    })?;
    Ok((agent, rt))
}

fn run(args: &RunArgs) -> i32 {
    let (agent, rt) = match start(&args.config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let opts = options(args);
    if args.dry_run {
        tracing::info!("dry run: nothing in AD is changed, nothing is acknowledged");
    }
    if args.once || args.dry_run {
        return rt.block_on(once(&agent, &opts, args.json));
    }
    tracing::info!(event = ad_sync_agent::logs::event::STARTED, config = %args.config.display(), state = %opts.state_dir.display(), "agent started");
    let r = rt.block_on(agent.run(&opts, async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        () = ctrl_c() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!("SIGTERM cannot be watched ({e}); Ctrl-C still stops the agent");
                    ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            ctrl_c().await;
        }
    }));
    match r {
        Ok(()) => {
            tracing::info!(event = ad_sync_agent::logs::event::STOPPED, "agent stopped");
            exit::OK
        }
        Err(e) => {
            tracing::error!("{e}");
            exit_code(&e)
        }
    }
}

/// `import`: OK when everything importable was imported (or would be), CHANGES_FAILED when
/// the cloud refused some objects (each is listed), RETRY when AD or the cloud was away.
fn export(args: &ExportArgs) -> i32 {
    let (agent, rt) = match start(&args.config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let run_opts = ad_sync_agent::RunOptions {
        state_dir: args
            .state_dir
            .clone()
            .unwrap_or_else(|| ad_sync_agent::default_state_dir(&args.config)),
        ..Default::default()
    };
    let mut state = match open_state(&agent, &run_opts) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut opts = ad_sync_agent::export::ExportOptions {
        containers: args.container.clone(),
        named: args.name.clone(),
        resync: args.resync,
        allow: args.allow_deletions,
        ..Default::default()
    };
    let r = rt.block_on(async {
        let beat = std::time::Instant::now();
        let (role, _) = agent.heartbeat(None).await.map_err(|e| e.to_string())?;
        if role != ad_sync_core::cloud::api::Role::Primary {
            return Ok(None);
        }
        opts.heartbeat_ms = ad_sync_agent::export::ms(beat);
        agent.export_and_record(&mut state, &opts).await.map(Some)
    });
    let report = match r {
        Ok(Some(r)) => r,
        Ok(None) => {
            println!("This agent is the standby: the primary exports AD's changes.");
            return exit::OK;
        }
        Err(e) => {
            tracing::error!("{e}");
            return exit::RETRY;
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(t) => println!("{t}"),
            Err(e) => {
                tracing::error!("cannot write the report as JSON: {e}");
                return exit::RETRY;
            }
        }
    } else {
        print_export(&report);
    }
    export_code(&report)
}

/// An export's exit code: CHANGES_FAILED when the cloud refused users, THRESHOLD when
/// suspensions are held, else OK.
fn export_code(report: &ad_sync_agent::export::ExportReport) -> i32 {
    if !report.refused.is_empty() {
        exit::CHANGES_FAILED
    } else if report.held > 0 {
        exit::THRESHOLD
    } else {
        exit::OK
    }
}

fn import(args: &ImportArgs) -> i32 {
    let (agent, rt) = match start(&args.config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let opts = ad_sync_agent::RunOptions {
        state_dir: args
            .state_dir
            .clone()
            .unwrap_or_else(|| ad_sync_agent::default_state_dir(&args.config)),
        ..Default::default()
    };
    let mut state = match agent.open_state(&opts) {
        Ok((s, _)) => s,
        Err(e) => {
            tracing::error!("{e}");
            return exit::CANNOT_START;
        }
    };
    use ad_sync_agent::progress::{Meter, Sink};
    let meter = Meter::new(vec![if args.json {
        Sink::Json
    } else {
        Sink::Terminal
    }]);
    let go = |dry_run: bool, state: &mut ad_sync_agent::state::State| {
        rt.block_on(ad_sync_agent::import::run(
            &agent,
            state,
            args.group.as_deref(),
            dry_run,
            &meter,
        ))
    };
    let failed = |e: ad_sync_agent::import::ImportError| {
        tracing::error!("{e}");
        match e {
            ad_sync_agent::import::ImportError::Group(_) => exit::CANNOT_START,
            _ => exit::RETRY,
        }
    };
    // On a terminal, the counts first, and a yes before anything is written.
    use std::io::IsTerminal;
    if !args.dry_run && !args.yes && !args.json && std::io::stdin().is_terminal() {
        let preview = match go(true, &mut state) {
            Ok(r) => r,
            Err(e) => return failed(e),
        };
        println!("The import would do this (nothing is imported yet):");
        for line in preview.summary() {
            println!("  {line}");
        }
        if preview.would_write() == 0 {
            println!("Nothing to import.");
            return exit::OK;
        }
        print!(
            "Import into {}? Type yes to import, anything else to stop: ",
            agent.client.base_url()
        );
        use std::io::Write;
        // A prompt that cannot be flushed is still answered; the read below decides.
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        if std::io::stdin().read_line(&mut answer).is_err()
            || !matches!(answer.trim().to_ascii_lowercase().as_str(), "yes" | "y")
        {
            println!("Nothing was imported.");
            return exit::OK;
        }
    }
    let report = match go(args.dry_run, &mut state) {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    let refused = report
        .items
        .iter()
        .filter(|i| i.outcome == "refused")
        .count();
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(j) => println!("{j}"),
            Err(e) => {
                tracing::error!("cannot write the report as JSON: {e}");
                return exit::CANNOT_START;
            }
        }
    } else {
        let would = if args.dry_run { "would be " } else { "" };
        for i in report.items.iter().filter(|i| i.outcome != "already") {
            let why = if i.message.is_empty() {
                String::new()
            } else {
                format!(": {}", i.message)
            };
            println!("{} {} {would}{}{why}", i.kind, i.name, i.outcome);
        }
        for line in report.summary() {
            println!("{line}");
        }
        if args.dry_run {
            println!("dry run: nothing was imported");
        }
    }
    if refused > 0 {
        exit::CHANGES_FAILED
    } else {
        exit::OK
    }
}

/// Waits for Ctrl-C. When it cannot be watched the agent runs on (its service manager stops it)
/// instead of stopping at once.
async fn ctrl_c() {
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::warn!(
            "Ctrl-C cannot be watched ({e}); stop the agent through its service manager"
        );
        std::future::pending::<()>().await;
    }
}

/// `--once`: see `exit`.
async fn once(agent: &ad_sync_agent::Agent, opts: &ad_sync_agent::RunOptions, json: bool) -> i32 {
    let answer = agent.heartbeat(None).await;
    let state = open_state(agent, opts);
    let mut state = match (answer, state) {
        (Err(e), state) => {
            tracing::error!("{e}");
            if let (Ok(mut state), false) = (state, opts.dry_run) {
                ad_sync_agent::record_contact(&mut state, Err(e.to_string()));
            }
            return exit_code(&e);
        }
        (Ok(_), Err(code)) => return code,
        (Ok(answer), Ok(mut state)) => {
            if !opts.dry_run {
                ad_sync_agent::record_contact(&mut state, Ok(answer.0));
            }
            if answer.0 != ad_sync_core::cloud::api::Role::Primary {
                if json {
                    println!("{}", serde_json::json!({"role": "standby"}));
                } else {
                    println!("standby");
                }
                return exit::OK;
            }
            state
        }
    };
    if !json {
        println!("primary");
    }
    let direction = agent.answers.sync.direction;
    // AD's changes to the cloud first, as the service does. A dry run sends nothing and has
    // no preview of the export yet: it says so instead of reporting an export it did not do.
    let exported = match (direction.from_ad(), opts.dry_run) {
        (true, false) => Some(
            agent
                .export_and_record(
                    &mut state,
                    &ad_sync_agent::export::ExportOptions {
                        resync: opts.resync,
                        allow: opts.allow_deletions,
                        ..Default::default()
                    },
                )
                .await,
        ),
        (true, true) => {
            eprintln!(
                "[sync] direction = \"{}\": a dry run does not read AD's changes for the cloud (nothing is sent); run without --dry-run to send them",
                direction.as_str()
            );
            None
        }
        (false, _) => None,
    };
    if let Some(Err(e)) = &exported {
        tracing::error!(
            event = ad_sync_agent::logs::event::EXPORT_FAILED,
            "sending AD's changes to the cloud: {e}"
        );
    }
    if !direction.to_ad() {
        return exported_only(agent, &state, exported, json).await;
    }
    let drained = agent.drain(&mut state, opts).await;
    if !opts.dry_run && drained.is_ok() {
        // Best effort: the cloud's status and alerts learn how this run went.
        let health = ad_sync_agent::Agent::run_health(&state);
        if let Err(h) = agent.heartbeat_with(None, Some(health)).await {
            tracing::warn!("the cloud was not told how the run went: {h}");
        }
    }
    if let Some(Ok(rep)) = &exported
        && !json
    {
        print_export(rep);
    }
    let export_exit = match &exported {
        Some(Err(_)) => Some(exit::RETRY),
        Some(Ok(rep)) if export_code(rep) != exit::OK => Some(export_code(rep)),
        _ => None,
    };
    match drained {
        Ok(r) if json => {
            let mut j = serde_json::to_value(&r).unwrap_or_default();
            j["role"] = "primary".into();
            j["dry_run"] = opts.dry_run.into();
            j["direction"] = direction.as_str().into();
            add_export(&mut j, &exported);
            println!("{}", serde_json::to_string_pretty(&j).unwrap_or_default());
            export_exit.unwrap_or_else(|| once_code(&r))
        }
        Ok(r) => {
            println!(
                "changes: {}, operations: {}, failed: {}, skipped: {}, created: {}, adopted: {}, cursor: {}{}",
                r.changes,
                r.operations,
                r.failed,
                r.skipped,
                r.created,
                r.adopted,
                r.cursor,
                if r.resynced { ", compared with AD" } else { "" }
            );
            for p in &r.planned {
                println!("would {p}");
            }
            if r.orphans > 0 {
                println!(
                    "orphans: {} (objects with the agent's marker for cloud objects it does not know; handled by the disconnection policy)",
                    r.orphans
                );
            }
            if r.held > 0 {
                eprintln!(
                    "{}",
                    held_words(r.held, r.blocked.as_ref(), Held::Disconnections)
                );
            }
            export_exit.unwrap_or_else(|| once_code(&r))
        }
        Err(e) => {
            tracing::error!("{e}");
            // Best effort: tell the cloud why; the exit code says it whether or not that works.
            if let Err(h) = agent.heartbeat(Some(&e.to_string())).await {
                tracing::warn!("the cloud was not told: {h}");
            }
            exit_code(&AgentError::Run(e))
        }
    }
}

/// `--once` when `[sync] direction = "ad-to-cloud"`: the export only (nothing is read from the
/// feed or written to AD). OK, CHANGES_FAILED when the cloud refused users, RETRY when AD or
/// the cloud was away.
async fn exported_only(
    agent: &ad_sync_agent::Agent,
    state: &ad_sync_agent::state::State,
    exported: Option<Result<ad_sync_agent::export::ExportReport, String>>,
    json: bool,
) -> i32 {
    if matches!(exported, Some(Ok(_))) {
        let health = ad_sync_agent::Agent::run_health(state);
        if let Err(h) = agent.heartbeat_with(None, Some(health)).await {
            tracing::warn!("the cloud was not told how the run went: {h}");
        }
    } else if let Some(Err(e)) = &exported
        && let Err(h) = agent
            .heartbeat(Some(&format!("sending AD's changes to the cloud: {e}")))
            .await
    {
        tracing::warn!("the cloud was not told: {h}");
    }
    if json {
        let mut j = serde_json::json!({
            "role": "primary",
            "direction": agent.answers.sync.direction.as_str(),
        });
        add_export(&mut j, &exported);
        println!("{}", serde_json::to_string_pretty(&j).unwrap_or_default());
    } else if let Some(Ok(rep)) = &exported {
        print_export(rep);
    }
    match &exported {
        Some(Err(_)) => exit::RETRY,
        Some(Ok(rep)) => export_code(rep),
        None => exit::OK,
    }
}

/// The export's report (or why it stopped) under `export` in `--once --json`'s document.
fn add_export(
    j: &mut serde_json::Value,
    exported: &Option<Result<ad_sync_agent::export::ExportReport, String>>,
) {
    match exported {
        Some(Ok(rep)) => j["export"] = serde_json::to_value(rep).unwrap_or_default(),
        Some(Err(e)) => j["export"] = serde_json::json!({ "error": e }),
        None => {}
    }
}

fn print_export(report: &ad_sync_agent::export::ExportReport) {
    println!(
        "AD to the cloud: {} read, {} page(s), {} changed user(s), group(s) and contact(s): {} created, {} updated, {} unchanged, {} suspended, {} restored, {} refused, {} left out by the scope",
        if report.full {
            "everything"
        } else {
            "what changed was"
        },
        report.pages,
        report.changed,
        report.created,
        report.updated,
        report.unchanged,
        report.suspended,
        report.restored,
        report.refused.len(),
        report.left_out_count
    );
    if report.reconciled {
        println!(
            "Full reconciliation: {} user(s) and group(s) in the scope read; {} the cloud holds from AD were not in it",
            report.read, report.departed
        );
    }
    for (guid, why) in &report.refused {
        println!("refused by the cloud: {guid}: {why}");
    }
    for (guid, why) in &report.left_out {
        println!("left out, although in a scope container: {guid}: {why}");
    }
    if report.held > 0 {
        eprintln!(
            "{}",
            held_words(report.held, report.blocked.as_ref(), Held::Suspensions)
        );
    }
}

/// Which direction's threshold held something.
enum Held {
    /// The cloud → AD planner's disconnections of AD objects.
    Disconnections,
    /// AD as a source's suspensions of cloud users.
    Suspensions,
}

/// What the deletion threshold held, why, and what to do.
fn held_words(
    n: usize,
    blocked: Option<&ad_sync_agent::plan::OverThreshold>,
    what: Held,
) -> String {
    let (done, objects, of, rest, noun) = match what {
        Held::Disconnections => (
            "disconnect",
            "AD objects",
            "managed",
            "applied",
            "disconnections",
        ),
        Held::Suspensions => (
            "suspend",
            "cloud users",
            "held from AD",
            "sent",
            "suspensions in the cloud",
        ),
    };
    let past = match what {
        Held::Disconnections => "disconnected",
        Held::Suspensions => "suspended",
    };
    let why = blocked.map_or(String::new(), |t| {
        format!(
            " (this run would {done} {} {objects} and {} were {past} in the last {} hours: more than the {} allowed of {} {of})",
            t.planned, t.spent, t.window_hours, t.limit, t.managed
        )
    });
    format!(
        "deletion budget: {n} {noun} are held{why}; everything else was {rest}. List them with `ad-sync-agent pending --config FILE`, approve some or all there, or raise [sync] deletion_threshold / deletion_threshold_percent / deletion_window_hours"
    )
}

/// `--once`'s exit code for a run that finished: see `exit`.
fn once_code(r: &ad_sync_agent::CycleReport) -> i32 {
    if r.failed > 0 {
        exit::CHANGES_FAILED
    } else if r.held > 0 {
        exit::THRESHOLD
    } else {
        exit::OK
    }
}

#[cfg(windows)]
mod windows {
    use std::ffi::OsString;
    use std::path::PathBuf;
    use std::sync::OnceLock;
    use std::time::Duration;
    use windows_service::service::{
        ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus,
        ServiceType,
    };
    use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
    use windows_service::{define_windows_service, service_dispatcher};

    static CONFIG: OnceLock<PathBuf> = OnceLock::new();

    define_windows_service!(ffi_service_main, service_main);

    /// The Win32 exit code the service stops with after a failure (the SCM's recovery then
    /// restarts it); the reason is in the log.
    const SERVICE_FAILED: u32 = 1;

    pub fn dispatch(config: PathBuf) -> i32 {
        // Set once, before the dispatcher starts: it cannot be set already.
        let _ = CONFIG.set(config);
        match service_dispatcher::start(
            ad_sync_core::install::layout::SERVICE_NAME,
            ffi_service_main,
        ) {
            Ok(()) => super::exit::OK,
            Err(e) => {
                eprintln!(
                    "ad-sync-agent service: {e}. This command is for the Service Control Manager; use `ad-sync-agent run --config FILE` from a shell."
                );
                super::exit::CANNOT_START
            }
        }
    }

    fn service_main(_args: Vec<OsString>) {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let stop_tx = std::sync::Mutex::new(Some(stop_tx));
        let handler = move |control| match control {
            ServiceControl::Stop | ServiceControl::Shutdown => {
                if let Ok(mut s) = stop_tx.lock()
                    && let Some(tx) = s.take()
                {
                    // The run has ended already when nobody listens: nothing to stop.
                    let _ = tx.send(());
                }
                ServiceControlHandlerResult::NoError
            }
            ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
            _ => ServiceControlHandlerResult::NotImplemented,
        };
        let Ok(status) =
            service_control_handler::register(ad_sync_core::install::layout::SERVICE_NAME, handler)
        else {
            return;
        };
        let report = |state, code| {
            // A status the SCM cannot take leaves it as it was: said in the log, once.
            if let Err(e) = status.set_service_status(ServiceStatus {
                service_type: ServiceType::OWN_PROCESS,
                current_state: state,
                controls_accepted: if state == ServiceState::Running {
                    ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
                } else {
                    ServiceControlAccept::empty()
                },
                exit_code: ServiceExitCode::Win32(code),
                checkpoint: 0,
                // Start-up reads the secrets, connects to the DC and the cloud (each with its
                // own timeout) and heartbeats: the SCM waits this long before it gives up.
                wait_hint: Duration::from_secs(if state == ServiceState::StartPending {
                    120
                } else {
                    10
                }),
                process_id: None,
            }) {
                tracing::warn!(
                    "the Service Control Manager did not take the service's state {state:?}: {e}"
                );
            }
        };
        // At once: the SCM kills a service that has not reported within its start timeout
        // (30 s by default), and start-up below can take longer when the DC is slow.
        report(ServiceState::StartPending, 0);
        let config = CONFIG.get().cloned().unwrap_or_default();
        let state_dir = ad_sync_agent::default_state_dir(&config);
        let opts = ad_sync_agent::RunOptions {
            // What `status` and the wizard's Finish page read while a run is under way.
            meter: ad_sync_agent::progress::Meter::new(vec![ad_sync_agent::progress::Sink::File(
                state_dir.clone(),
            )]),
            state_dir,
            concurrency: 8,
            ..Default::default()
        };
        let agent = match ad_sync_agent::Agent::start(&config) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!("{e}");
                report(ServiceState::Stopped, SERVICE_FAILED);
                return;
            }
        };
        let rt = match super::runtime() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!("{e}");
                report(ServiceState::Stopped, SERVICE_FAILED);
                return;
            }
        };
        report(ServiceState::Running, 0);
        tracing::info!(
            event = ad_sync_agent::logs::event::STARTED,
            config = %config.display(),
            "agent started as a Windows service"
        );
        let r = rt.block_on(agent.run(&opts, async {
            // Stop asked, or the handler gone (the SCM is done with the service): stop either way.
            let _ = stop_rx.await;
        }));
        match r {
            Ok(()) => {
                tracing::info!(event = ad_sync_agent::logs::event::STOPPED, "agent stopped");
                report(ServiceState::Stopped, 0)
            }
            Err(e) => {
                tracing::error!("{e}");
                report(ServiceState::Stopped, SERVICE_FAILED);
            }
        }
    }
}
