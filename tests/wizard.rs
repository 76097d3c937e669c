//! The wizard, driven by egui_kittest through its accessible labels: a fresh setup against the
//! real Samba DC and `ad-sync-cloud`, review mode over an existing config, each page's failure,
//! and a check that hangs on a server that never answers.

mod support;

use ad_sync::wizard::{Options, WizardApp, backend::Live};
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::testbed::{self, accounts};

type H = Harness<'static, WizardApp>;

fn tmp(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("wizard-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

fn wizard(config: &Path) -> H {
    let config = config.to_path_buf();
    Harness::builder()
        .with_size(egui::vec2(800.0, 600.0))
        .with_max_steps(20)
        .build_eframe(move |cc| {
            let options = Options {
                config_path: config,
                backend: Arc::new(Live),
                elevated: true,
                debounce: Duration::from_millis(60),
                bench: false,
            };
            WizardApp::new(&cc.egui_ctx, options).unwrap_or_else(|e| panic!("{e}"))
        })
}

/// Every label on screen, for a failure message.
fn screen(h: &H) -> String {
    h.query_all_by(|_| true)
        .filter_map(|n| n.accesskit_node().label().or_else(|| n.accesskit_node().value()))
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

fn has(h: &H, text: &str) -> bool {
    h.query_all_by_label_contains(text).next().is_some()
}

/// Steps frames until `cond` holds; the checks run on their own threads meanwhile.
fn wait_for(h: &mut H, what: &str, cond: impl Fn(&H) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        h.step();
        if cond(h) {
            return;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}; the screen shows:\n{}", screen(h));
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn wait_text(h: &mut H, text: &str) {
    wait_for(h, text, |h| has(h, text));
}

/// Types a whole value into the field labelled `label`, as assistive technology would.
fn set(h: &mut H, label: &str, value: &str) {
    h.get_by_label(label).set_text_value_accesskit(value);
    h.step();
}

/// No check is running or waiting for typing to stop.
fn settled(h: &H) -> bool {
    !has(h, "Cancel check") && !has(h, "Waiting to check")
}

fn next_enabled(h: &H) -> bool {
    !h.get_by_label("Next").accesskit_node().is_disabled()
}

fn next(h: &mut H) {
    wait_for(h, "Next to be enabled", next_enabled);
    h.get_by_label("Next").click();
    h.step();
    h.step();
}

fn heading(h: &H) -> String {
    screen(h)
        .lines()
        .find(|l| l.starts_with("Step "))
        .unwrap_or_default()
        .to_string()
}

/// No check of this page may show FAIL; wait until every shown one settled.
fn wait_page_passes(h: &mut H, page: &str) {
    wait_for(h, &format!("the checks of {page} to pass"), |h| {
        next_enabled(h) && !has(h, "FAIL:") && settled(h)
    });
}

#[test]
fn fresh_setup_walks_every_page_against_samba_and_the_cloud() {
    let bed = support::bed();
    let cloud = support::cloud::shared();
    let key = cloud.issue_key("DC=example,DC=com", None);
    let dir = tmp("fresh");
    let mut h = wizard(&dir.join("agent.toml"));
    h.step();
    h.step();

    // 1 Welcome
    assert!(heading(&h).contains("Step 1 of 10: Welcome"), "{}\n---\n{}", heading(&h), screen(&h));
    assert!(has(&h, "Have these ready"));
    next(&mut h);

    // 2 Destination folder
    assert!(heading(&h).contains("Destination folder"));
    set(&mut h, "Destination folder", &dir.join("program").display().to_string());
    wait_text(&mut h, "will be created by the install step");
    next(&mut h);

    // 3 Server type
    h.get_by_label("Member server").click();
    h.step();
    next(&mut h);

    // 4 Domain controller: empty is refused on the page, then dc1 resolves and answers.
    assert!(has(&h, "Domain controller is empty"));
    assert!(h.get_by_label("Next").accesskit_node().is_disabled());
    set(&mut h, "Domain controller (FQDN)", "ldap://dc1.example.com");
    assert!(has(&h, "without ldap://"));
    set(&mut h, "Domain controller (FQDN)", testbed::DC1_HOST);
    wait_page_passes(&mut h, "Domain controller");
    assert!(has(&h, "PASS:"));
    next(&mut h);

    // 5 Connection: the DC's CA is not trusted yet; the certificate is shown; trusting the CA file fixes it.
    wait_text(&mut h, "FAIL:");
    assert!(has(&h, "SHA-256"), "{}", screen(&h));
    assert!(has(&h, "not issued by a CA this machine trusts"), "{}", screen(&h));
    assert!(h.get_by_label("Next").accesskit_node().is_disabled());
    set(&mut h, "Trust this CA file (PEM, optional)", &bed.dc1.ca_file.display().to_string());
    wait_page_passes(&mut h, "Connection security");
    next(&mut h);

    // 6 Root User container: lower-case types are normalised as you type.
    set(&mut h, "Root User container", "ou=Staff;dc=example;dc=com");
    assert!(has(&h, "Normalised: OU=Staff,DC=example,DC=com"), "{}", screen(&h));
    assert!(has(&h, "Semicolon form: OU=Staff;DC=example;DC=com"));
    assert!(has(&h, "Changed:"));
    wait_page_passes(&mut h, "Root User container");
    next(&mut h);

    // 7 Service account
    set(&mut h, "Service account", &format!("EXAMPLE\\{}", accounts::GOOD));
    set(&mut h, "Password", testbed::SVC_PASSWORD);
    wait_page_passes(&mut h, "Service account");
    assert!(!screen(&h).contains(testbed::SVC_PASSWORD), "the password is on screen");
    next(&mut h);

    // 8 Connect key
    set(&mut h, "Cloud URL", &cloud.url);
    set(&mut h, "Cloud CA file (PEM, optional)", &cloud.ca.display().to_string());
    set(&mut h, "Connect key", &key);
    assert!(has(&h, "Format and checksum are right"));
    wait_page_passes(&mut h, "Connect key");
    assert!(!screen(&h).contains(&key), "the key is on screen while masked");
    next(&mut h);

    // 9 Sync settings: defaults shown, then the group.
    assert!(has(&h, "Disable the AD account (default)"));
    set(&mut h, "Sync group", "CN=Cloud Groups;OU=Staff;DC=example;DC=com");
    wait_page_passes(&mut h, "Sync settings");
    next(&mut h);

    // 10 Review: all 24 checks pass; export has no secret; the key was not used.
    assert!(heading(&h).contains("Step 10 of 10: Review"));
    wait_for(&mut h, "the review checks", |h| settled(h) && has(h, "PASS:"));
    assert!(!has(&h, "FAIL:"), "{}", screen(&h));
    assert_eq!(h.query_all_by_label_contains("PASS:").count(), 24, "{}", screen(&h));
    assert!(h.get_by_label("Install").accesskit_node().is_disabled(), "install is not part of this build");
    let export = dir.join("exported.toml");
    set(&mut h, "Export to", &export.display().to_string());
    h.get_by_label("Export answers file").click_accesskit();
    wait_text(&mut h, "Exported to");
    let text = std::fs::read_to_string(&export).unwrap_or_else(|e| panic!("{e}"));
    assert!(!text.contains(testbed::SVC_PASSWORD) && !text.contains(&key), "{text}");
    assert!(text.contains("OU=Staff;DC=example;DC=com") && text.contains("AD_SYNC_PASSWORD"), "{text}");
    let listed = cloud.admin_ok(&["key", "list"]);
    let tail = &key[key.len() - 4..];
    let line = listed.lines().find(|l| l.contains(tail)).unwrap_or_default();
    assert!(!line.contains("used"), "the wizard used the key up: {line}");
    // Nothing was installed: no config was written.
    assert!(!dir.join("agent.toml").exists());
}
