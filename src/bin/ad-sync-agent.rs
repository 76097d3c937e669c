//! `ad-sync-agent`: the service. `run --config FILE` under systemd (or by hand); on Windows the
//! Service Control Manager starts `service --config FILE`, which runs the same loop under the
//! SCM dispatcher.

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

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent in the foreground (what the systemd unit starts).
    Run {
        /// The installed config (secrets come from the store beside it, or systemd's credentials).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Check in once, print the role the cloud gives, and exit.
        #[arg(long)]
        once: bool,
        /// Change nothing in AD (logs what would be done).
        #[arg(long)]
        dry_run: bool,
    },
    /// Run under the Windows Service Control Manager (the SCM starts this; not for a shell).
    #[cfg(windows)]
    Service {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AD_SYNC_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run {
            config,
            once,
            dry_run,
        } => run(&config, once, dry_run),
        #[cfg(windows)]
        Command::Service { config } => windows::dispatch(config),
    };
    std::process::exit(code);
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

fn run(config: &std::path::Path, once: bool, dry_run: bool) -> i32 {
    let agent = match ad_sync::agent::Agent::start(config) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("{e}");
            return 2;
        }
    };
    let rt = match runtime() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("{e}");
            return 2;
        }
    };
    if dry_run {
        tracing::info!("dry run: nothing in AD is changed");
    }
    if once {
        return match rt.block_on(agent.heartbeat()) {
            Ok((role, _)) => {
                println!(
                    "{}",
                    if role == ad_sync::cloud::api::Role::Primary {
                        "primary"
                    } else {
                        "standby"
                    }
                );
                0
            }
            Err(e) => {
                tracing::error!("{e}");
                1
            }
        };
    }
    tracing::info!(config = %config.display(), "agent started");
    rt.block_on(agent.run(async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }));
    tracing::info!("agent stopped");
    0
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

    pub fn dispatch(config: PathBuf) -> i32 {
        let _ = CONFIG.set(config);
        match service_dispatcher::start(ad_sync::install::layout::SERVICE_NAME, ffi_service_main) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!(
                    "ad-sync-agent service: {e}. This command is for the Service Control Manager; use `ad-sync-agent run --config FILE` from a shell."
                );
                2
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
                    let _ = tx.send(());
                }
                ServiceControlHandlerResult::NoError
            }
            ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
            _ => ServiceControlHandlerResult::NotImplemented,
        };
        let Ok(status) =
            service_control_handler::register(ad_sync::install::layout::SERVICE_NAME, handler)
        else {
            return;
        };
        let report = |state, code| {
            let _ = status.set_service_status(ServiceStatus {
                service_type: ServiceType::OWN_PROCESS,
                current_state: state,
                controls_accepted: if state == ServiceState::Running {
                    ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
                } else {
                    ServiceControlAccept::empty()
                },
                exit_code: ServiceExitCode::Win32(code),
                checkpoint: 0,
                wait_hint: Duration::from_secs(10),
                process_id: None,
            });
        };
        let config = CONFIG.get().cloned().unwrap_or_default();
        let agent = match ad_sync::agent::Agent::start(&config) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!("{e}");
                // ERROR_SERVICE_SPECIFIC_ERROR-style stop: the SCM's recovery restarts it.
                report(ServiceState::Stopped, 1);
                return;
            }
        };
        let Ok(rt) = super::runtime() else {
            report(ServiceState::Stopped, 1);
            return;
        };
        report(ServiceState::Running, 0);
        rt.block_on(agent.run(async {
            let _ = stop_rx.await;
        }));
        report(ServiceState::Stopped, 0);
    }
}
