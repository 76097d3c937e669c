//! The workspace's other binaries for the tests and benches: `ad-sync-agent` and
//! `ad-sync-cloud` live in their own packages (crates/agent, crates/cloud), so Cargo does not
//! hand this package their paths (`CARGO_BIN_EXE_*` is only for a package's own binaries). The
//! first call in a process builds the binary with the same profile as the running test, so a
//! test never runs a stale agent, and returns its path beside this test's own target folder.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// `target/<profile>` of the running test or bench (its executable is in `deps/` below it).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current exe: {e}"));
    exe.parent()
        .and_then(|deps| deps.parent())
        .unwrap_or_else(|| panic!("{} is not in target/<profile>/deps", exe.display()))
        .to_path_buf()
}

/// Builds `bin` (once per process) and returns its path. The build selects the workspace's
/// default members, as `cargo build` at the top does, so its dependencies are built with the
/// same features and reused rather than built a second time for the one package.
pub fn built(bin: &str) -> &'static str {
    static BUILT: OnceLock<Mutex<Vec<(String, &'static str)>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(|| Mutex::new(Vec::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some((_, path)) = built.iter().find(|(b, _)| b == bin) {
        return path;
    }
    let dir = profile_dir();
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .args(["build", "--quiet", "--bin", bin, "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
    // The tests' agent with its kill-at-a-point hooks, as ad-sync-setup gets them through this
    // package's dev-dependencies; a release build (the benches, the real-window test) has none.
    let release = dir.file_name().is_some_and(|n| n == "release");
    if bin == "ad-sync-agent" && !release {
        cargo.args(["--features", "ad-sync-agent/fault-hooks"]);
    }
    // `cargo bench` builds into target/release with the bench profile, which is release's.
    if dir.file_name().is_some_and(|n| n == "release") {
        cargo.arg("--release");
    }
    let status = cargo
        .status()
        .unwrap_or_else(|e| panic!("cargo build --bin {bin}: {e}"));
    assert!(
        status.success(),
        "cargo build --bin {bin} failed ({status})"
    );
    let path = dir.join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.is_file(), "{} was not built", path.display());
    let path: &'static str = Box::leak(path.to_string_lossy().into_owned().into_boxed_str());
    built.push((bin.to_string(), path));
    path
}

/// The agent service's binary.
pub fn agent() -> &'static str {
    built("ad-sync-agent")
}

/// The reference cloud's binary.
pub fn cloud() -> &'static str {
    built("ad-sync-cloud")
}

/// `ad-sync-setup`, with the agent built beside it: `install` copies the agent program from the
/// installer's own folder, and `cargo test` builds only this package's binaries by itself.
pub fn setup_with_agent() -> &'static str {
    agent();
    env!("CARGO_BIN_EXE_ad-sync-setup")
}
