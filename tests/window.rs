//! The release wizard in a real window, as an administrator meets it: `ad-sync-setup` built
//! with `--release`, under Xvfb, driven through every page by real X11 input (xdotool moves the
//! pointer, clicks, types) against the test domain and the reference cloud, with the OU tree
//! used to pick the container and the group picker the sync group; Install stages the files
//! under a prefix.
//!
//! What to click is found by name in the wizard's own AccessKit tree, which it writes to a file
//! when `AD_SYNC_SETUP_UI_DUMP` is set (the names kittest and screen readers use), with each
//! node's rectangle in window pixels. Each page is kept as a screenshot in
//! `target/screenshots/window/`, and the test fails when any text on any page reaches past the
//! window's edge. Secrets reach xdotool on its standard input, never its command line.

mod support;

use std::path::Path;
use std::time::Duration;
use support::testbed::{self, accounts};
use support::xwin::{Window, Xvfb, tool};

/// Starts the release wizard on its own Xvfb with a config and a staging prefix under `dir`.
fn open(setup: &Path, dir: &Path) -> (Xvfb, Window) {
    let x = Xvfb::start();
    let dump = dir.join("ui.json");
    let log = dir.join("wizard.log");
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots/window");
    let out = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}"));
    let err = out.try_clone().unwrap_or_else(|e| panic!("{e}"));
    let wizard = tool(setup.to_str().unwrap_or_default())
        .arg("--config")
        .arg(dir.join("etc/agent.toml"))
        .arg("--prefix")
        .arg(dir.join("root"))
        .env("DISPLAY", &x.display)
        .env_remove("WAYLAND_DISPLAY")
        .env("AD_SYNC_SETUP_UI_DUMP", &dump)
        // The test domain's DNS (Samba's internal DNS on dc1's address), not the machine's.
        .env("AD_SYNC_DNS_SERVER", testbed::DNS_SERVER)
        .env("AD_SYNC_LOG", "debug")
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", setup.display()));
    let w = Window::attach(
        wizard,
        &x.display,
        dump,
        log,
        shots,
        Duration::from_secs(60),
    );
    (x, w)
}

#[test]
fn the_release_wizard_in_a_real_window_reaches_finish_without_a_dn_typed() {
    let bed = support::bed();
    let cloud = support::cloud::shared();
    let key = cloud.issue_key("DC=example,DC=com", None);
    // The release build of the wizard and of the agent its Install copies from beside it.
    let status = tool(&std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--quiet",
            "--release",
            "--bin",
            "ad-sync-setup",
            "--bin",
            "ad-sync-agent",
            "--manifest-path",
        ])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .status()
        .unwrap_or_else(|e| panic!("cargo build --release: {e}"));
    assert!(status.success(), "cargo build --release: {status}");
    let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/ad-sync-setup");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("window-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));

    let (_x, mut w) = open(&setup, &dir);

    // 1 Welcome
    w.wait("the Welcome page", |s| s.heading().contains("Step 1 of 13"));
    w.next("welcome");
    // 2 Destination folder
    w.type_into(
        "Destination folder",
        &dir.join("program").display().to_string(),
    );
    w.wait("the folder check", |s| {
        s.has("will be created by the install step")
    });
    w.next("folder");
    // 3 Server type
    w.click("Member server");
    w.next("server-type");
    // 4 Domain controller: the domain's DNS is searched and the DC found fills the field.
    w.type_into("Domain to search", "example.com");
    w.click("Find domain controllers");
    w.wait("discovery", |s| {
        s.has("dc1.example.com (priority 0, weight 100), in this server's site")
            && s.value("Domain controller (FQDN)").as_deref() == Some(testbed::DC1_HOST)
    });
    w.next("domain-controller");
    // 5 Connection security: the DC's CA is trusted from a file.
    w.wait("the certificate", |s| s.has("SHA-256"));
    w.type_into(
        "Trust this CA file (optional)",
        &bed.dc1.ca_file.display().to_string(),
    );
    w.next("connection");
    // 6 Service account: the logon is tried when the password field is left.
    w.type_into("Service account", &format!("EXAMPLE\\{}", accounts::GOOD));
    w.type_into("Password", testbed::SVC_PASSWORD);
    w.key("Tab");
    w.wait("the logon", |s| s.has("checks passed"));
    w.next("account");
    // 7 Root User container: picked in the tree, never typed.
    w.wait("the tree", |s| s.get("Staff").is_some());
    w.click("Staff");
    w.wait("the pick", |s| {
        s.value("Root User container").as_deref() == Some("OU=Staff,DC=example,DC=com")
    });
    w.next("root-dn");
    // 8 Connect key
    w.type_into("Cloud URL", &cloud.url);
    w.type_into("Cloud CA file (optional)", &cloud.ca.display().to_string());
    w.type_into("Connect key", &key);
    w.wait("the key's format", |s| {
        s.has("Format and checksum are right")
    });
    w.next("connect-key");
    // 9 Sync group: picked among those under OU=Staff.
    w.wait("the groups", |s| s.get("Cloud Groups").is_some());
    w.click("Cloud Groups");
    w.wait("the pick", |s| {
        s.value("Sync group").as_deref() == Some("CN=Cloud Groups,OU=Staff,DC=example,DC=com")
    });
    w.next("sync");
    // 10 Sync policies: the defaults.
    w.wait("the policies", |s| {
        s.has("Disable the AD account (default)")
    });
    w.next("policies");
    // 11 Review, then Install.
    w.wait("the review", |s| s.enabled("Install") && !s.has("Failed:"));
    w.settle_and_record("review");
    w.click("Install");
    // 12 Install
    w.wait("the install", |s| {
        s.heading().contains("Install") && s.enabled("Next >")
    });
    w.settle_and_record("install");
    w.click("Next >");
    // 13 Finish: one Close.
    let s = w.wait("Finish", |s| s.heading().contains("Step 13 of 13: Finish"));
    assert_eq!(
        s.names().iter().filter(|n| **n == "Close").count(),
        1,
        "{}",
        s.names().join("\n")
    );
    assert!(
        s.has("The ad-sync agent is installed."),
        "{}",
        s.names().join("\n")
    );
    w.settle_and_record("finish");
    // The config was staged under the prefix.
    let config = dir.join("etc/agent.toml");
    let staged = dir
        .join("root")
        .join(config.strip_prefix("/").unwrap_or(&config));
    assert!(staged.is_file(), "{} was not written", staged.display());
    w.click("Close");
    let status = w.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "the wizard exited with {status}");
    // No secret reached the wizard's log or the screen's text.
    let log = std::fs::read_to_string(&w.log).unwrap_or_default();
    let dump = std::fs::read_to_string(&w.dump).unwrap_or_default();
    for (what, text) in [("log", &log), ("screen", &dump)] {
        assert!(
            !text.contains(testbed::SVC_PASSWORD) && !text.contains(&key),
            "a secret is in the wizard's {what}"
        );
    }
    assert_eq!(w.page, 13, "a screenshot per page");
}
