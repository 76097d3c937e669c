//! `ad-sync-cloud`'s command line: `serve`, the admin subcommands (which open the same database
//! file and work while the server runs), and `load`.
//!
//! Exit codes: 0 done, 1 refused (bad input, unknown user, ...), 2 could not run at all.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::server::status_page::{self, Health, ago};
use crate::server::store::{AdminError, Listed, Store, Timing};
use crate::server::tls::{TlsSource, default_names};
use crate::server::{RateLimit, ServeOptions};
use ad_sync_api::api::MemberType;
use ad_sync_api::secret::Secret;
use ad_sync_api::time_fmt::{now_unix, unix_to_rfc3339};

#[derive(Debug, Parser)]
#[command(
    name = "ad-sync-cloud",
    version,
    about = "The reference cloud side of the ad-sync agent API: domain instances, connect keys, enrollment, agent status and the directory agents mirror into AD"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Db {
    /// The database: an SQLite file (created when missing), or a PostgreSQL database as
    /// postgres://USER@HOST:PORT/DATABASE (its password in the environment variable
    /// PGPASSWORD, never in the address) for several nodes on one database.
    #[arg(long, value_name = "FILE|URL")]
    pub db: PathBuf,
}

/// The database and the domain instance a directory command works on.
#[derive(Debug, Args)]
pub struct DirDb {
    #[command(flatten)]
    pub db: Db,
    /// The domain instance (any DN form); needed only when the cloud has several.
    #[arg(long, value_name = "DOMAIN_DN")]
    pub domain: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the agent API over HTTPS, and the status page at /.
    Serve(Box<ServeArgs>),
    /// Domain instances (AD domains agents may enroll for).
    #[command(subcommand)]
    Domain(DomainCmd),
    /// Connect keys.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Enrolled agents, their role and health; `agents deregister ID` retires one.
    Agents(AgentsArgs),
    /// Cloud directory users.
    #[command(subcommand)]
    User(UserCmd),
    /// Cloud directory groups and memberships.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Contacts from AD (AD as a source).
    #[command(subcommand)]
    Contact(ContactCmd),
    /// Heartbeat load test on loopback: starts its own server, enrolls simulated agents, prints
    /// throughput, latency percentiles and the server's memory over the run. Runs the program
    /// ad-sync-cloud-load from beside this one (it links the agents' client; this one does not).
    Load(LoadArgs),
    /// Moves a cloud from its SQLite file to PostgreSQL: keys, agents, the directory, the feed,
    /// links and incidents, in one transaction, into an empty database; then compares each
    /// table's rows on both sides. Stop the server first; start it again with --db URL.
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The SQLite file the cloud runs on now (brought to this version's schema first, as
    /// `serve` would).
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    /// The PostgreSQL database to move it into: postgres://USER@HOST:PORT/DATABASE, empty
    /// (its password in PGPASSWORD).
    #[arg(long, value_name = "URL")]
    pub to: PathBuf,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: Db,
    /// Address to listen on, like 0.0.0.0:8443 (port 0 picks a free one and prints it).
    #[arg(long, value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// PEM certificate (chain) to serve.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "self_signed"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (unencrypted) for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Make (once) and use a local CA and server certificate in DIR; clients trust DIR/ca.pem.
    #[arg(long, value_name = "DIR", required_unless_present = "tls_cert")]
    pub self_signed: Option<PathBuf>,
    /// Extra host name or address for the self-signed certificate (repeatable).
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,
    /// How often agents are asked to heartbeat.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,
    /// How long a silent primary keeps its role before another agent takes it.
    #[arg(long, default_value = "90s", value_parser = parse_duration)]
    pub primary_timeout: Duration,
    /// Failed key checks and enrollments allowed per client address per window.
    #[arg(long, default_value_t = 20)]
    pub max_failed_key_checks: u32,
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub key_check_window: Duration,
    /// Connections open at once (capped by the open-files limit, less 64 for the database
    /// and logs); one over it is closed at once.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// Connections open at once from one IP address.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections_per_address: u32,
    /// Time for the TLS handshake and for each request's head; an idle keep-alive connection
    /// is closed after it too.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// Time for a request's body and its handling.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Serve the status page (HTML, no login) on this loopback address, like 127.0.0.1:8444;
    /// it is not on the API's port.
    #[arg(long, value_name = "ADDR")]
    pub status_listen: Option<std::net::SocketAddr>,
    /// Post a JSON event here when an agent goes silent, is blocked by the deletion threshold
    /// or fails changes, and again when that clears (https, or http to a loopback address).
    /// A URL holding a token is better given by --alert-webhook-file or --alert-webhook-env,
    /// which keep it off the command line.
    #[arg(long, value_name = "URL", conflicts_with_all = ["alert_webhook_file", "alert_webhook_env"])]
    pub alert_webhook: Option<String>,
    /// The webhook's URL, read from the first line of this file.
    #[arg(long, value_name = "FILE", conflicts_with = "alert_webhook_env")]
    pub alert_webhook_file: Option<std::path::PathBuf>,
    /// The webhook's URL, read from this environment variable.
    #[arg(long, value_name = "VAR")]
    pub alert_webhook_env: Option<String>,
}

/// The webhook from whichever of --alert-webhook, --alert-webhook-file, --alert-webhook-env
/// was given (clap allows one), read and checked.
fn webhook(args: &ServeArgs) -> Option<Result<crate::server::alerts::Webhook, String>> {
    use crate::server::alerts::Webhook;
    match (
        args.alert_webhook.as_deref(),
        args.alert_webhook_file.as_deref(),
        args.alert_webhook_env.as_deref(),
    ) {
        (Some(url), _, _) => Some(Webhook::parse(url)),
        (_, Some(file), _) => Some(Webhook::from_file(file)),
        (_, _, Some(var)) => Some(Webhook::from_env(var)),
        _ => None,
    }
}

#[derive(Debug, Subcommand)]
pub enum DomainCmd {
    /// Add a domain instance: `DC=example,DC=com` (either separator; compared as a DN).
    Add {
        #[command(flatten)]
        db: Db,
        domain_dn: String,
    },
    List(Db),
    /// Forest to forest: every object the cloud holds from `--from`'s AD (AD as a source) is
    /// copied into `--into`'s directory and kept in step, and `--into`'s agent writes it into
    /// its AD under its own policies. Passwords are not part of it.
    Mirror(MirrorArgs),
    /// Stop a mirror: the copies stay in `--into`, handed to this cloud; nothing is removed.
    Unmirror(MirrorArgs),
    /// How long this domain keeps what AD deleted (users suspended, groups and contacts marked
    /// deleted) before removing it for good: 1 to 3650 days (default 30).
    Retention {
        #[command(flatten)]
        db: Db,
        #[arg(long, value_name = "DOMAIN_DN")]
        domain: String,
        #[arg(long)]
        days: u32,
    },
    /// Every mirror, with its copies and the names left out because `--into` holds them.
    Mirrors {
        #[command(flatten)]
        db: Db,
        /// One JSON document instead of lines.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct MirrorArgs {
    #[command(flatten)]
    pub db: Db,
    /// The domain instance whose AD is the source (any DN form).
    #[arg(long, value_name = "DOMAIN_DN")]
    pub from: String,
    /// The domain instance that receives the copies (any DN form).
    #[arg(long, value_name = "DOMAIN_DN")]
    pub into: String,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentsArgs {
    #[command(subcommand)]
    pub cmd: Option<AgentsCmd>,
    /// The database (for the listing): an SQLite file, or postgres://USER@HOST:PORT/DATABASE.
    #[arg(long, value_name = "FILE|URL")]
    pub db: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AgentsCmd {
    /// Retire an agent (a stolen or decommissioned server): its credential stops working at
    /// once, it is sealed no more passwords, and its primary role moves to another agent.
    Deregister {
        #[command(flatten)]
        db: Db,
        /// The agent's id, as `ad-sync-cloud agents` lists it (agt-...).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Issue a one-time connect key; the key alone is on stdout's last line.
    Issue {
        #[command(flatten)]
        db: Db,
        #[arg(long, value_name = "DOMAIN_DN")]
        domain: String,
        /// How long the key works (7d, 12h, 30m ...).
        #[arg(long, default_value = "7d", value_parser = parse_duration)]
        ttl: Duration,
    },
    /// Every key, redacted, with its state.
    List(Db),
    /// Revoke an unused key at once: it can no longer enroll (`key_revoked`).
    Revoke {
        #[command(flatten)]
        db: Db,
        /// The key's last four characters as `key list` shows them, or `-` to read the whole
        /// key from standard input (never give the whole key as an argument: other users of
        /// this machine can see command lines).
        key: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// List every user with its state, its authority and the AD objects it is linked to.
    List {
        #[command(flatten)]
        db: DirDb,
        /// Only the users whose authority is AD (`ad`: AD as a source), the cloud (`cloud`), or
        /// another domain's AD (`mirror`: `domain mirror`).
        #[arg(long, value_parser = ["ad", "cloud", "mirror"])]
        source: Option<String>,
        /// Only the users deleted in AD (or moved out of its scope) and kept, suspended, until
        /// they are removed for good (30 days after).
        #[arg(long)]
        deleted: bool,
        /// One JSON document instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Add a user (the agent creates its AD account).
    Add {
        #[command(flatten)]
        db: DirDb,
        username: String,
        #[arg(long)]
        given: String,
        #[arg(long)]
        surname: String,
        #[arg(long)]
        email: Option<String>,
    },
    /// Suspend a user (the agent disables its AD account).
    Suspend(UserRef),
    /// Unsuspend a user (the agent enables its AD account).
    Unsuspend(UserRef),
    /// Lock a user (no AD account is ever locked; see docs/agent.md).
    Lock(UserRef),
    /// Unlock a user (the agent clears its AD lockout, as `[sync] sync_account_locked_out_status` says).
    Unlock(UserRef),
    /// Remove a user (the agent applies the disconnection policy).
    Remove(UserRef),
    /// Change a user's name parts or e-mail.
    Update {
        #[command(flatten)]
        user: UserRef,
        #[arg(long)]
        given: Option<String>,
        #[arg(long)]
        surname: Option<String>,
        #[arg(long, conflicts_with = "no_email")]
        email: Option<String>,
        /// Clear the e-mail address.
        #[arg(long)]
        no_email: bool,
    },
    /// Rename a user (its id and memberships stay; the agent renames the AD account).
    Rename {
        #[command(flatten)]
        user: UserRef,
        new_name: String,
    },
    /// Set a password; it is sealed to each enrolled agent's key and never stored.
    SetPassword {
        #[command(flatten)]
        user: UserRef,
        /// File holding the password (one line); `-` reads standard input.
        #[arg(long, value_name = "FILE")]
        password_file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct UserRef {
    #[command(flatten)]
    pub db: DirDb,
    pub username: String,
}

#[derive(Debug, Subcommand)]
pub enum ContactCmd {
    /// List the contacts AD sent (AD as a source): address, the map's fields, the AD contact
    /// each is linked to. Contacts are AD's: no command changes them.
    List {
        #[command(flatten)]
        db: DirDb,
        /// Only the contacts deleted in AD (or moved out of its scope), kept until they are
        /// removed for good (30 days after).
        #[arg(long)]
        deleted: bool,
        /// One JSON document instead of lines.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// List every group with its direct members, its authority and the AD groups it is linked to.
    List {
        #[command(flatten)]
        db: DirDb,
        /// Only the groups whose authority is AD (`ad`: AD as a source), the cloud (`cloud`), or
        /// another domain's AD (`mirror`: `domain mirror`).
        #[arg(long, value_parser = ["ad", "cloud", "mirror"])]
        source: Option<String>,
        /// Only the groups deleted in AD (or moved out of its scope) and kept, with their
        /// members, until they are removed for good (30 days after).
        #[arg(long)]
        deleted: bool,
        /// One JSON document instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Add a group (the agent creates it in AD, in the sync group).
    Add {
        #[command(flatten)]
        db: DirDb,
        name: String,
    },
    /// Remove a group (the agent applies the group disconnection policy).
    Remove {
        #[command(flatten)]
        db: DirDb,
        name: String,
    },
    /// Rename a group (its id and memberships stay; the agent renames the AD group).
    Rename {
        #[command(flatten)]
        db: DirDb,
        name: String,
        new_name: String,
    },
    /// Add a user or group to a group.
    AddMember(MemberArgs),
    /// Take a user or group out of a group.
    RemoveMember(MemberArgs),
}

#[derive(Debug, Args)]
pub struct MemberArgs {
    #[command(flatten)]
    pub db: DirDb,
    pub group: String,
    /// A user's or a group's name.
    pub member: String,
    /// The member is a user (when a group has the same name).
    #[arg(long, conflicts_with = "group_member")]
    pub user: bool,
    /// The member is a group (when a user has the same name).
    #[arg(long = "group")]
    pub group_member: bool,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Simulated agents (1 to 10,000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub agents: u32,
    /// Seconds of heartbeats (1 to 120).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=120))]
    pub seconds: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=512))]
    pub concurrency: u32,
    /// Before the heartbeats, hold this many idle TLS connections (half a request line each,
    /// from 127.0.1.x, 100 per address) and time /v1/health for 3 s meanwhile.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(0..=900))]
    pub idle: u32,
    /// The database the servers use: an empty PostgreSQL database
    /// (postgres://USER@HOST:PORT/DATABASE, its password in PGPASSWORD). Without it, a
    /// throwaway SQLite file.
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
    /// How many `serve` nodes to start on that database (1 to 8).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub nodes: u32,
    /// Put Debian's HAProxy (TCP mode, round robin) in front of the nodes and send every
    /// request through it, as a cloud of several machines is reached.
    #[arg(long)]
    pub haproxy: bool,
}

/// `load`: the load test is its own program beside this one, so that the server links none of
/// the agents' client (see crates/cloud-load); its exit code is this one's.
fn load(args: &LoadArgs) -> i32 {
    let name = format!("ad-sync-cloud-load{}", std::env::consts::EXE_SUFFIX);
    let program = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name(&name),
        Err(e) => {
            eprintln!("error: cannot find this program's folder ({e}), so not {name} beside it");
            return exit::CANNOT_RUN;
        }
    };
    let status = std::process::Command::new(&program)
        .args(["--agents", &args.agents.to_string()])
        .args(["--seconds", &args.seconds.to_string()])
        .args(["--concurrency", &args.concurrency.to_string()])
        .args(["--idle", &args.idle.to_string()])
        .args(["--nodes", &args.nodes.to_string()])
        .args(args.db.iter().flat_map(|db| ["--db", db.as_str()]))
        .args(args.haproxy.then_some("--haproxy"))
        .status();
    match status {
        Ok(s) => s.code().unwrap_or(exit::CANNOT_RUN),
        Err(e) => {
            eprintln!(
                "error: the load test is the program {} ({e}); build it with `cargo build --release -p ad-sync-cloud-load` (a plain `cargo build --release` at the top builds it too)",
                program.display()
            );
            exit::CANNOT_RUN
        }
    }
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration ({e}); write it like 7d, 12h, 90s"))
}

/// The exit codes (see the module's doc).
pub mod exit {
    pub const OK: i32 = 0;
    /// Refused: bad input, an unknown user, a server that stopped with an error.
    pub const REFUSED: i32 = 1;
    /// Could not run at all: bad options, no runtime, the store or the port unusable.
    pub const CANNOT_RUN: i32 = 2;
}

/// Runs a command; the exit code.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Load(args) => load(&args),
        other => match admin(other) {
            Ok(()) => exit::OK,
            Err(AdminError::Invalid(msg)) => {
                eprintln!("error: {msg}");
                exit::REFUSED
            }
            Err(e) => {
                eprintln!("error: {e}");
                exit::CANNOT_RUN
            }
        },
    }
}

fn serve(args: ServeArgs) -> i32 {
    let tls = match (&args.tls_cert, &args.tls_key, &args.self_signed) {
        (Some(cert), Some(key), _) => TlsSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        (_, _, Some(dir)) => TlsSource::SelfSigned {
            dir: dir.clone(),
            names: default_names(&args.listen, &args.names),
        },
        _ => {
            eprintln!("error: give --tls-cert and --tls-key, or --self-signed DIR");
            return exit::CANNOT_RUN;
        }
    };
    for (flag, d) in [
        ("--header-timeout", args.header_timeout),
        ("--request-timeout", args.request_timeout),
    ] {
        if d < Duration::from_secs(1) {
            eprintln!(
                "error: {flag}: give at least 1s (like 10s); a shorter time would close every connection"
            );
            return exit::CANNOT_RUN;
        }
    }
    let alert_webhook = match webhook(&args) {
        None => None,
        Some(Ok(w)) => Some(w),
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let opts = ServeOptions {
        db: args.db.db,
        listen: args.listen,
        tls,
        timing: Timing {
            heartbeat_interval: args.heartbeat_interval,
            primary_timeout: args.primary_timeout,
        },
        rate_limit: RateLimit {
            max_failures: args.max_failed_key_checks,
            window: args.key_check_window,
        },
        limits: crate::server::listener::Limits {
            max_connections: args.max_connections as usize,
            max_per_address: args.max_connections_per_address as usize,
            header_timeout: args.header_timeout,
            request_timeout: args.request_timeout,
        },
        status_listen: args.status_listen,
        alert_webhook,
    };
    // Storage calls run on blocking threads; the node's one database connection serialises
    // them anyway, so a small bounded pool keeps memory flat under load instead of growing a
    // thread per waiter.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(8)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::CANNOT_RUN;
        }
    };
    rt.block_on(async {
        let running = match crate::server::start(opts, shutdown_signal()).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::CANNOT_RUN;
            }
        };
        // Scripts and tests read these two lines; keep their shape. A reader that closed the
        // pipe early must not bring the server down, so write errors are ignored.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ad-sync-cloud listening on https://{}", running.addr);
        if let Some(ca) = &running.ca_file {
            let _ = writeln!(out, "clients trust: {}", ca.display());
        }
        if let Some(a) = running.status_addr {
            let _ = writeln!(out, "status page on https://{a}/");
        }
        let _ = out.flush();
        drop(out);
        tracing::info!(addr = %running.addr, "serving");
        match running.task.await {
            Ok(Ok(())) => exit::OK,
            Ok(Err(e)) => {
                eprintln!("error: the server stopped: {e}");
                exit::REFUSED
            }
            Err(e) => {
                eprintln!("error: the server stopped: {e}");
                exit::REFUSED
            }
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!("Ctrl-C cannot be watched ({e}); stop the server with SIGTERM");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

fn open(db: &Db) -> Result<Store, AdminError> {
    Store::open(&db.db)
}

/// Runs `f` with the store and the domain instance a directory command works on.
fn with_dir<T>(
    d: &DirDb,
    f: impl FnOnce(&Store, i64) -> Result<T, AdminError>,
) -> Result<T, AdminError> {
    let store = open(&d.db)?;
    let domain = store.domain_id(d.domain.as_deref())?;
    f(&store, domain)
}

fn admin(cmd: Command) -> Result<(), AdminError> {
    match cmd {
        Command::Domain(DomainCmd::Add { db, domain_dn }) => {
            let (row, created) = open(&db)?.add_domain(&domain_dn)?;
            if created {
                println!("added domain instance {}", row.dn);
            } else {
                println!("domain instance {} already exists", row.dn);
            }
        }
        Command::Domain(DomainCmd::List(db)) => {
            for d in open(&db)?.domains()? {
                println!(
                    "{}\tprimary: {}\tadded {}",
                    d.dn,
                    d.primary_agent.as_deref().unwrap_or("none"),
                    unix_to_rfc3339(d.created_at)
                );
            }
        }
        Command::Domain(DomainCmd::Mirror(m)) => {
            let store = open(&m.db)?;
            let (from, into) = (
                store.domain_id(Some(&m.from))?,
                store.domain_id(Some(&m.into))?,
            );
            let done = store.mirror_add(from, into, ad_sync_api::time_fmt::now_unix())?;
            println!(
                "mirroring {} into {}: {} objects copied now, {} memberships; {} left out because {} holds their names (`domain mirrors` lists them). Its agent writes them into its AD under its own policies; passwords are not part of it",
                m.from, m.into, done.created, done.memberships, done.conflicts, m.into
            );
        }
        Command::Domain(DomainCmd::Unmirror(m)) => {
            let store = open(&m.db)?;
            let (from, into) = (
                store.domain_id(Some(&m.from))?,
                store.domain_id(Some(&m.into))?,
            );
            if store.mirror_remove(from, into)? {
                println!(
                    "stopped mirroring {} into {}; its copies stay in {} as this cloud's own objects",
                    m.from, m.into, m.into
                );
            } else {
                println!("{} was not mirrored into {}", m.from, m.into);
            }
        }
        Command::Domain(DomainCmd::Retention { db, domain, days }) => {
            let store = open(&db)?;
            let id = store.domain_id(Some(&domain))?;
            store.set_source_retention(id, days)?;
            println!(
                "{domain} keeps what AD deleted for {days} day(s), then removes it for good (at the next batch from its agent)"
            );
        }
        Command::Domain(DomainCmd::Mirrors { db, json }) => {
            let rows = open(&db)?.mirrors()?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "mirrors": rows }))
                        .map_err(|e| AdminError::Invalid(format!("cannot write JSON: {e}")))?
                );
            } else if rows.is_empty() {
                println!("no mirrors");
            }
            for r in rows.iter().filter(|_| !json) {
                println!(
                    "{} -> {}\tsince {}\t{} users, {} groups{}",
                    r.from,
                    r.into,
                    unix_to_rfc3339(r.since),
                    r.users,
                    r.groups,
                    if r.conflicts.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "\tleft out (the name is taken in {}): {}",
                            r.into,
                            r.conflicts.join(", ")
                        )
                    }
                );
            }
        }
        Command::Key(KeyCmd::Issue { db, domain, ttl }) => {
            let (key, row) = open(&db)?.issue_key(&domain, ttl)?;
            println!(
                "Connect key for {}, valid until {}. It is shown only now; the cloud keeps a hash.",
                row.domain,
                unix_to_rfc3339(row.expires_at)
            );
            println!("{}", key.secret().expose());
        }
        Command::Key(KeyCmd::Revoke { db, key }) => {
            let text = if key == "-" {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).map_err(|e| {
                    AdminError::Invalid(format!("key: cannot read standard input: {e}"))
                })?;
                zeroize::Zeroizing::new(line.trim().to_string())
            } else if key.len() > 8 {
                return Err(AdminError::Invalid(
                    "key: give its last four characters (as `key list` shows them), or `-` and the key on standard input; a whole key on the command line is visible to other users".into(),
                ));
            } else {
                zeroize::Zeroizing::new(key)
            };
            let row = open(&db)?.revoke_key(&text, now_unix())?;
            println!(
                "key {} for {} revoked at {}: it can no longer enroll an agent",
                row.hint,
                row.domain,
                row.revoked_at.map(unix_to_rfc3339).unwrap_or_default()
            );
        }
        Command::Key(KeyCmd::List(db)) => {
            let now = now_unix();
            println!("KEY\tDOMAIN\tSTATE\tISSUED\tEXPIRES\tUSED BY");
            for k in open(&db)?.keys()? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    k.hint,
                    k.domain,
                    k.state(now).as_str(),
                    unix_to_rfc3339(k.created_at),
                    unix_to_rfc3339(k.expires_at),
                    k.used_by.as_deref().unwrap_or("-")
                );
            }
        }
        Command::Agents(AgentsArgs {
            cmd: Some(AgentsCmd::Deregister { db, id }),
            ..
        }) => {
            if open(&db)?.deregister_agent(&id, now_unix())? {
                println!("agent {id} deregistered: its credential no longer works");
            } else {
                println!("agent {id} was already deregistered");
            }
        }
        Command::Agents(AgentsArgs { cmd: None, db }) => {
            let db = Db {
                db: db.ok_or_else(|| {
                    AdminError::Invalid("give the database: ad-sync-cloud agents --db FILE".into())
                })?,
            };
            let now = now_unix();
            // The admin view has no server settings; the defaults say healthy or not.
            let timing = Timing::default();
            println!(
                "AGENT\tDOMAIN\tROLE\tHEALTH\tHOST\tVERSION\tLAST SEEN\tRUNS\tLAST SUCCESSFUL RUN"
            );
            for a in open(&db)?.agents()? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    a.id,
                    a.domain,
                    if a.primary { "primary" } else { "standby" },
                    Health::of(&a, timing, now).label(),
                    a.host,
                    a.version,
                    ago(now, a.last_seen),
                    status_page::run_state(&a),
                    status_page::last_success(&a, now),
                );
            }
        }
        Command::User(cmd) => user(cmd)?,
        Command::Group(cmd) => group(cmd)?,
        Command::Contact(ContactCmd::List { db, deleted, json }) => {
            let (all, keep) =
                with_dir(&db, |s, d| Ok((s.contact_list(d)?, s.source_retention(d)?)))?;
            let shown: Vec<_> = all
                .into_iter()
                .filter(|c| c.deleted_at.is_some() == deleted)
                .collect();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "contacts": shown }))
                        .map_err(|e| AdminError::Invalid(format!("cannot write JSON: {e}")))?
                );
            } else if shown.is_empty() {
                println!("no contacts");
            }
            for c in shown.iter().filter(|_| !json) {
                let mut line = c.mail.clone();
                let name = c
                    .fields
                    .get("display_name")
                    .filter(|n| !n.is_empty())
                    .cloned()
                    .unwrap_or_else(|| {
                        format!(
                            "{} {}",
                            c.fields.get("given_name").cloned().unwrap_or_default(),
                            c.fields.get("surname").cloned().unwrap_or_default()
                        )
                        .trim()
                        .to_string()
                    });
                line.push_str(&format!(" ({name}, from AD"));
                if let Some(at) = c.deleted_at {
                    line.push_str(&deleted_words(at, keep));
                }
                line.push(')');
                for l in &c.links {
                    line.push_str(&format!(" [linked: {} objectGUID {}]", l.domain, l.guid));
                }
                println!("{line}");
            }
        }
        Command::Migrate(m) => {
            if !m
                .to
                .to_str()
                .is_some_and(crate::server::store::is_postgres_url)
            {
                return Err(AdminError::Invalid(format!(
                    "--to {}: name a PostgreSQL database, as postgres://USER@HOST:PORT/DATABASE",
                    m.to.display()
                )));
            }
            if m.from
                .to_str()
                .is_some_and(crate::server::store::is_postgres_url)
            {
                return Err(AdminError::Invalid(format!(
                    "--from {}: name the SQLite file the cloud runs on now",
                    m.from.display()
                )));
            }
            if !m.from.is_file() {
                return Err(AdminError::Invalid(format!(
                    "--from {}: no such file; name the SQLite file the cloud runs on now (its serve --db)",
                    m.from.display()
                )));
            }
            let from = Store::open(&m.from)?;
            let to = Store::open(&m.to)?;
            let moved = from.migrate_into(&to)?;
            println!("{:<20} {:>10} {:>10}", "table", "from", "to");
            for t in &moved {
                println!("{:<20} {:>10} {:>10}", t.table, t.from, t.to);
            }
            let rows: i64 = moved.iter().map(|t| t.to).sum();
            println!(
                "moved {rows} rows in {} tables; every table holds as many rows as in {}. Start the server with --db {}",
                moved.len(),
                m.from.display(),
                crate::server::store::without_password(&m.to.to_string_lossy())
            );
        }
        Command::Serve(_) | Command::Load(_) => unreachable!("handled by run"),
    }
    Ok(())
}

fn user(cmd: UserCmd) -> Result<(), AdminError> {
    let set = |r: &UserRef, suspended: Option<bool>, locked: Option<bool>, what: &str| {
        let changed = with_dir(&r.db, |s, d| s.user_set(d, &r.username, suspended, locked))?;
        if changed {
            println!("{} {what}", r.username);
        } else {
            println!("{} was already {what}; nothing changed", r.username);
        }
        Ok(())
    };
    match cmd {
        UserCmd::List {
            db,
            source,
            deleted,
            json,
        } => {
            let (all, keep) = with_dir(&db, |s, d| Ok((s.user_list(d)?, s.source_retention(d)?)))?;
            let shown = all
                .into_iter()
                .filter(|u| source.as_deref().is_none_or(|want| u.source == want))
                .filter(|u| u.deleted_at.is_some() == deleted)
                .collect();
            list(shown, json, "users", keep)
        }
        UserCmd::Add {
            db,
            username,
            given,
            surname,
            email,
        } => {
            with_dir(&db, |s, d| {
                s.user_add(d, &username, &given, &surname, email.as_deref())
            })?;
            println!("added user {username}");
            Ok(())
        }
        UserCmd::Suspend(r) => set(&r, Some(true), None, "suspended"),
        UserCmd::Unsuspend(r) => set(&r, Some(false), None, "active"),
        UserCmd::Lock(r) => set(&r, None, Some(true), "locked"),
        UserCmd::Unlock(r) => set(&r, None, Some(false), "unlocked"),
        UserCmd::Remove(r) => {
            with_dir(&r.db, |s, d| s.user_remove(d, &r.username))?;
            println!("removed user {}", r.username);
            Ok(())
        }
        UserCmd::Update {
            user,
            given,
            surname,
            email,
            no_email,
        } => {
            let email = match (email.as_deref(), no_email) {
                (_, true) => Some(None),
                (Some(e), false) => Some(Some(e)),
                (None, false) => None,
            };
            let changed = with_dir(&user.db, |s, d| {
                s.user_update(
                    d,
                    &user.username,
                    given.as_deref(),
                    surname.as_deref(),
                    email,
                )
            })?;
            if changed {
                println!("updated user {}", user.username);
            } else {
                println!(
                    "{} already had those values; nothing changed",
                    user.username
                );
            }
            Ok(())
        }
        UserCmd::Rename { user, new_name } => {
            with_dir(&user.db, |s, d| s.user_rename(d, &user.username, &new_name))?;
            println!("renamed user {} to {new_name}", user.username);
            Ok(())
        }
        UserCmd::SetPassword {
            user,
            password_file,
        } => {
            let password = read_password(&password_file)?;
            let n = with_dir(&user.db, |s, d| {
                s.set_password(d, &user.username, &password)
            })?;
            println!(
                "password for {} sealed to {n} enrolled agent(s); it is not stored",
                user.username
            );
            Ok(())
        }
    }
}

fn read_password(path: &Path) -> Result<Secret, AdminError> {
    // The file's text holds the password: cleared from memory when dropped.
    let text = zeroize::Zeroizing::new(if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| {
            AdminError::Invalid(format!(
                "--password-file -: cannot read standard input: {e}"
            ))
        })?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|e| {
            AdminError::Invalid(format!(
                "--password-file {}: cannot read it: {e}",
                path.display()
            ))
        })?
    });
    // One line: the line break an editor adds is not part of the password.
    let line = text.strip_suffix('\n').unwrap_or(&text);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.contains('\n') {
        return Err(AdminError::Invalid(format!(
            "--password-file {}: holds more than one line; put the password alone on one line",
            path.display()
        )));
    }
    Ok(Secret::new(line))
}

fn group(cmd: GroupCmd) -> Result<(), AdminError> {
    match cmd {
        GroupCmd::List {
            db,
            source,
            deleted,
            json,
        } => {
            let (all, keep) = with_dir(&db, |s, d| Ok((s.group_list(d)?, s.source_retention(d)?)))?;
            let shown = all
                .into_iter()
                .filter(|g| source.as_deref().is_none_or(|want| g.source == want))
                .filter(|g| g.deleted_at.is_some() == deleted)
                .collect();
            list(shown, json, "groups", keep)?
        }
        GroupCmd::Add { db, name } => {
            with_dir(&db, |s, d| s.group_add(d, &name))?;
            println!("added group {name}");
        }
        GroupCmd::Remove { db, name } => {
            with_dir(&db, |s, d| s.group_remove(d, &name))?;
            println!("removed group {name}");
        }
        GroupCmd::Rename { db, name, new_name } => {
            with_dir(&db, |s, d| s.group_rename(d, &name, &new_name))?;
            println!("renamed group {name} to {new_name}");
        }
        GroupCmd::AddMember(m) => membership(m, true)?,
        GroupCmd::RemoveMember(m) => membership(m, false)?,
    }
    Ok(())
}

/// When an object AD deleted was deleted, and when it goes for good (`keep`: the domain's
/// retention, in seconds).
fn deleted_words(at: i64, keep: i64) -> String {
    format!(
        ", deleted in AD {}, removed after {}",
        ad_sync_api::time_fmt::unix_to_text(at),
        ad_sync_api::time_fmt::unix_to_text(at + keep)
    )
}

/// Prints users or groups, one per line (with their state and links), or as JSON.
fn list(items: Vec<Listed>, json: bool, what: &str, keep: i64) -> Result<(), AdminError> {
    if json {
        let doc = serde_json::json!({ what: items });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc)
                .map_err(|e| AdminError::Invalid(format!("cannot write JSON: {e}")))?
        );
        return Ok(());
    }
    if items.is_empty() {
        println!("no {what}");
    }
    for i in &items {
        let mut line = i.name.clone();
        if let Some(u) = &i.user {
            line.push_str(&format!(" ({} {}", u.given_name, u.surname));
            if let Some(e) = &u.email {
                line.push_str(&format!(", {e}"));
            }
            if u.suspended {
                line.push_str(", suspended");
            }
            if u.locked {
                line.push_str(", locked");
            }
            if i.source == "ad" {
                line.push_str(", from AD");
            }
            if let Some(d) = &i.mirrored_from {
                line.push_str(&format!(", mirrored from {d}"));
            }
            if let Some(at) = i.deleted_at {
                line.push_str(&deleted_words(at, keep));
            }
            line.push(')');
        } else if let Some(d) = &i.mirrored_from {
            line.push_str(&format!(" (mirrored from {d})"));
        } else if i.source == "ad" {
            line.push_str(" (from AD");
            if let Some(d) = i.attributes.get("description") {
                line.push_str(&format!(", {d}"));
            }
            if let Some(at) = i.deleted_at {
                line.push_str(&deleted_words(at, keep));
            }
            line.push(')');
        }
        if !i.members.is_empty() {
            line.push_str(&format!(" members: {}", i.members.join(", ")));
        }
        for l in &i.links {
            line.push_str(&format!(" [linked: {} objectGUID {}]", l.domain, l.guid));
        }
        println!("{line}");
    }
    Ok(())
}

fn membership(m: MemberArgs, add: bool) -> Result<(), AdminError> {
    let kind = match (m.user, m.group_member) {
        (true, _) => Some(MemberType::User),
        (_, true) => Some(MemberType::Group),
        _ => None,
    };
    let changed = with_dir(&m.db, |s, d| {
        s.membership(d, &m.group, &m.member, kind, add)
    })?;
    let what = match (add, changed) {
        (true, true) => "added to",
        (true, false) => "was already in",
        (false, true) => "removed from",
        (false, false) => "was not in",
    };
    println!("{} {what} {}", m.member, m.group);
    Ok(())
}
