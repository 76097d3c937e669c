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
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("wizard-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

fn wizard(config: &Path) -> H {
    wizard_in(config, None)
}

/// A wizard whose install goes under `prefix` (the config path stays the installed one).
fn wizard_in(config: &Path, prefix: Option<PathBuf>) -> H {
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
                bench: None,
                prefix,
                // The agent program to install is the one cargo built.
                agent_dir: Path::new(support::bins::agent())
                    .parent()
                    .map(Path::to_path_buf),
                // The test domain's own DNS (Samba's internal DNS server on dc1's address), not
                // this machine's resolver; and a member server of example.com.
                dns_server: Ok(Some(
                    testbed::DNS_SERVER
                        .parse()
                        .unwrap_or_else(|e| panic!("{e}")),
                )),
                host_domain: Some("example.com".into()),
                ui_dump: None,
                bench_page: None,
            };
            WizardApp::new(&cc.egui_ctx, options).unwrap_or_else(|e| panic!("{e}"))
        })
}

/// Every label on screen, for a failure message.
fn screen(h: &H) -> String {
    h.query_all_by(|_| true)
        .filter_map(|n| {
            n.accesskit_node()
                .label()
                .or_else(|| n.accesskit_node().value())
        })
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
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what}; the screen shows:\n{}",
            screen(h)
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Clicks a widget as a user would: scrolled into view first (a long page, such as Finish with
/// a deep staging path, puts its lower buttons below the window's edge), then pressed there.
/// The widget's place is read once the scroll has landed and it stops moving; a click at its
/// old place would land on whatever scrolled there (that is how the Finish page's "Preview the
/// import" was missed when CI's longer checkout path wrapped the lines above it once more).
fn click(h: &mut H, label: &str) {
    h.get_by_label(label).scroll_to_me();
    // Measured: the request is taken in the first frame, the new offset drawn in the third.
    h.run_steps(3);
    let mut at = h.get_by_label(label).rect();
    for _ in 0..10 {
        h.step();
        let now = h.get_by_label(label).rect();
        if now == at {
            break;
        }
        at = now;
    }
    h.get_by_label(label).click();
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
/// A check passed: shown alone ("Passed: …" to a screen reader) or folded among others.
fn passed(h: &H) -> bool {
    has(h, "Passed:") || has(h, "checks passed")
}

/// Opens the fold of passed checks, so their sentences are on screen.
fn unfold_passed(h: &mut H) {
    let label = h
        .query_all_by_label_contains("checks passed")
        .next()
        .and_then(|n| n.accesskit_node().label().map(|l| l.to_string()));
    if let Some(label) = label {
        click(h, &label);
        h.run_steps(3);
    }
}

fn settled(h: &H) -> bool {
    !has(h, "Cancel check") && !has(h, "Waiting to check")
}

fn next_enabled(h: &H) -> bool {
    !h.get_by_label("Next >").accesskit_node().is_disabled()
}

fn next(h: &mut H) {
    wait_for(h, "Next to be enabled", next_enabled);
    // Whatever page a test leaves, nothing on it ran off the window.
    assert_nothing_cut(h, &heading(h));
    click(h, "Next >");
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
        next_enabled(h) && !has(h, "Failed:") && settled(h)
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
    assert!(
        heading(&h).contains("Step 1 of 13: Welcome"),
        "{}\n---\n{}",
        heading(&h),
        screen(&h)
    );
    assert!(has(&h, "Have these ready"));
    next(&mut h);

    // 2 Destination folder
    assert!(heading(&h).contains("Destination folder"));
    set(
        &mut h,
        "Destination folder",
        &dir.join("program").display().to_string(),
    );
    wait_text(&mut h, "will be created by the install step");
    next(&mut h);

    // 3 Server type
    click(&mut h, "Member server");
    h.step();
    next(&mut h);

    // 4 Domain controller: this member server's domain is searched as the page opens, in the
    // test domain's own DNS (real SRV records), and the DC found fills the empty field.
    assert_eq!(
        h.get_by_label("Domain to search").value().as_deref(),
        Some("example.com")
    );
    wait_text(&mut h, "DNS lists one domain controller for example.com");
    // The site, as dc1 answered the LDAP ping, and its DC marked.
    assert!(
        has(&h, "This server is in the AD site Default-First-Site-Name")
            && has(
                &h,
                "dc1.example.com (priority 0, weight 100), in this server's site"
            ),
        "{}",
        screen(&h)
    );
    wait_for(&mut h, "the DC found to fill the field", |h| {
        h.get_by_label("Domain controller (FQDN)")
            .value()
            .as_deref()
            == Some(testbed::DC1_HOST)
    });
    // A calm page: emptied, the field does not complain until Next is tried.
    set(&mut h, "Domain controller (FQDN)", "");
    assert!(!has(&h, "Domain controller is empty"), "{}", screen(&h));
    assert!(h.get_by_label("Next >").accesskit_node().is_disabled());
    click(&mut h, "Next >");
    h.step();
    h.step();
    assert!(has(&h, "Domain controller is empty"), "{}", screen(&h));
    click(
        &mut h,
        "dc1.example.com (priority 0, weight 100), in this server's site",
    );
    h.run_steps(2);
    assert_eq!(
        h.get_by_label("Domain controller (FQDN)")
            .value()
            .as_deref(),
        Some(testbed::DC1_HOST)
    );
    // A domain DNS does not hold: said as a sentence, not a resolver's debug dump.
    set(&mut h, "Domain to search", "nowhere.example.org");
    click(&mut h, "Find domain controllers");
    h.step();
    wait_for(&mut h, "discovery of a domain DNS does not hold", |h| {
        settled(h)
            && has(h, "nowhere.example.org")
            && (has(h, "does not know")
                || has(h, "could not answer")
                || has(h, "refused")
                || has(h, "no domain controller records"))
    });
    assert!(!screen(&h).contains("Query {"), "{}", screen(&h));
    set(&mut h, "Domain controller (FQDN)", "ldap://dc1.example.com");
    assert!(has(&h, "without ldap://"));
    set(&mut h, "Domain controller (FQDN)", testbed::DC1_HOST);
    wait_page_passes(&mut h, "Domain controller");
    assert!(passed(&h));
    next(&mut h);

    // 5 Connection: the DC's CA is not trusted yet; the certificate is shown; trusting the CA file fixes it.
    wait_text(&mut h, "Failed:");
    assert!(has(&h, "SHA-256"), "{}", screen(&h));
    assert!(
        has(&h, "not issued by a CA this machine trusts"),
        "{}",
        screen(&h)
    );
    assert!(h.get_by_label("Next >").accesskit_node().is_disabled());
    set(
        &mut h,
        "Trust this CA file (optional)",
        &bed.dc1.ca_file.display().to_string(),
    );
    wait_page_passes(&mut h, "Connection security");
    next(&mut h);

    // 6 Service account: before the container, so the next page can read the directory.
    assert!(
        heading(&h).contains("Step 6 of 13: Service account"),
        "{}",
        heading(&h)
    );
    set(
        &mut h,
        "Service account",
        &format!("EXAMPLE\\{}", accounts::GOOD),
    );
    set(&mut h, "Password", testbed::SVC_PASSWORD);
    wait_page_passes(&mut h, "Service account");
    assert!(
        !screen(&h).contains(testbed::SVC_PASSWORD),
        "the password is on screen"
    );
    next(&mut h);

    // 7 Root User container: picked from the live tree, no DN typed. CN=Users is proposed.
    assert!(
        heading(&h).contains("Step 7 of 13: Root User container"),
        "{}",
        heading(&h)
    );
    wait_for(&mut h, "CN=Users proposed", |h| {
        h.get_by_label("Root User container").value().as_deref()
            == Some("CN=Users,DC=example,DC=com")
    });
    assert!(has(&h, "A valid DN"), "{}", screen(&h));
    assert!(
        has(&h, "Proposed: the domain's Users container"),
        "{}",
        screen(&h)
    );
    wait_for(&mut h, "the tree's first level", |h| {
        h.query_by_label("Staff").is_some()
    });
    // What AD hides outside Advanced Features is not offered.
    assert!(h.query_by_label("System").is_none(), "{}", screen(&h));
    assert!(h.query_by_label("Users").is_some());
    click(&mut h, "Staff");
    h.run_steps(2);
    assert_eq!(
        h.get_by_label("Root User container").value().as_deref(),
        Some("OU=Staff,DC=example,DC=com"),
        "the DN picked is shown once, as picked"
    );
    wait_page_passes(&mut h, "Root User container");
    assert!(passed(&h), "{}", screen(&h));
    // The tree opens a level on demand.
    click(&mut h, "Expand Staff");
    h.step();
    wait_for(&mut h, "OU=Staff's children", |h| {
        h.query_by_label("Collapse Staff").is_some() && !has(h, "Reading…")
    });
    next(&mut h);

    // 8 Connect key
    set(&mut h, "Cloud URL", &cloud.url);
    set(
        &mut h,
        "Cloud CA file (optional)",
        &cloud.ca.display().to_string(),
    );
    set(&mut h, "Connect key", &key);
    assert!(has(&h, "Format and checksum are right"));
    wait_page_passes(&mut h, "Connect key");
    assert!(
        !screen(&h).contains(&key),
        "the key is on screen while masked"
    );
    next(&mut h);

    // 9 Sync group: picked from those under OU=Staff. A distribution group is listed, says
    // why, and cannot be picked.
    wait_for(&mut h, "the groups under OU=Staff", |h| {
        h.query_by_label("Cloud Groups").is_some() && h.query_by_label("Mailing List").is_some()
    });
    assert!(
        h.get_by_label("Mailing List")
            .accesskit_node()
            .is_disabled()
    );
    assert!(
        has(&h, "distribution group: it has no security identity"),
        "{}",
        screen(&h)
    );
    click(&mut h, "Cloud Groups");
    h.run_steps(2);
    assert_eq!(
        h.get_by_label("Sync group").value().as_deref(),
        Some("CN=Cloud Groups,OU=Staff,DC=example,DC=com")
    );
    wait_page_passes(&mut h, "Sync group");
    next(&mut h);

    // 10 Sync policies: defaults marked; each choice says what the agent then does.
    assert!(
        has(&h, "Disable the AD account (default)"),
        "{}",
        screen(&h)
    );
    assert!(has(&h, "Deletion threshold"), "{}", screen(&h));
    next(&mut h);

    // 10 Review: every check passes (the preview of the first sync may warn of collisions
    // other tests' cloud users make); export has no secret; the key was not used.
    assert!(heading(&h).contains("Step 11 of 13: Review"));
    wait_for(&mut h, "the review checks", |h| settled(h) && passed(h));
    assert!(!has(&h, "Failed:"), "{}", screen(&h));
    let warned = h
        .query_all_by_label_contains("Warning: first sync:")
        .count();
    assert!(
        has(
            &h,
            &format!(
                "{} checks passed",
                ad_sync::preflight::ids::ALL.len() - warned
            )
        ),
        "{}",
        screen(&h)
    );
    unfold_passed(&mut h);
    assert!(has(&h, "first sync: users: "), "{}", screen(&h));
    assert!(
        !h.get_by_label("Install").accesskit_node().is_disabled(),
        "every check passed: Install is offered"
    );
    assert!(has(&h, "What Install will do"), "{}", screen(&h));
    // The protection this machine gives the secrets (systemd-creds where systemd 250+ is).
    let protection = ad_sync::secrets::Protection::detect().words();
    assert!(
        has(&h, &format!("Secrets go to: {protection}")),
        "{}",
        screen(&h)
    );
    let export = dir.join("exported.toml");
    set(&mut h, "Export to", &export.display().to_string());
    h.get_by_label("Export answers file").click_accesskit();
    wait_text(&mut h, "Exported to");
    let text = std::fs::read_to_string(&export).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !text.contains(testbed::SVC_PASSWORD) && !text.contains(&key),
        "{text}"
    );
    // The secrets are named, not given: the file replays with them in the environment.
    let replay = ad_sync::answers::Answers::parse(&text, dir.clone())
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(
        replay.service_account.password_env.as_deref(),
        Some("AD_SYNC_PASSWORD")
    );
    assert_eq!(
        replay
            .cloud
            .as_ref()
            .and_then(|c| c.connect_key_env.as_deref()),
        Some("AD_SYNC_CONNECT_KEY")
    );
    assert_eq!(replay.directory.root_user_dn, "OU=Staff,DC=example,DC=com");
    let listed = cloud.admin_ok(&["key", "list"]);
    let tail = &key[key.len() - 4..];
    let line = listed
        .lines()
        .find(|l| l.contains(tail))
        .unwrap_or_default();
    assert!(!line.contains("used"), "the wizard used the key up: {line}");
    // Nothing was installed: no config was written.
    assert!(!dir.join("agent.toml").exists());
}

/// Good values for every page, to reach the page a test is about.
struct Good {
    dir: PathBuf,
    key: String,
}

impl Good {
    fn new(name: &str) -> Good {
        let cloud = support::cloud::shared();
        Good {
            dir: tmp(name),
            key: cloud.issue_key("DC=example,DC=com", None),
        }
    }

    fn fill(&self, h: &mut H, page: &str) {
        let bed = support::bed();
        let cloud = support::cloud::shared();
        match page {
            "Destination folder" => set(
                h,
                "Destination folder",
                &self.dir.join("program").display().to_string(),
            ),
            "Domain controller" => set(h, "Domain controller (FQDN)", testbed::DC1_HOST),
            "Connection security" => set(
                h,
                "Trust this CA file (optional)",
                &bed.dc1.ca_file.display().to_string(),
            ),
            "Root User container" => set(h, "Root User container", "OU=Staff;DC=example;DC=com"),
            "Service account" => {
                set(
                    h,
                    "Service account",
                    &format!("EXAMPLE\\{}", accounts::GOOD),
                );
                set(h, "Password", testbed::SVC_PASSWORD);
            }
            "Connect key" => {
                set(h, "Cloud URL", &cloud.url);
                set(
                    h,
                    "Cloud CA file (optional)",
                    &cloud.ca.display().to_string(),
                );
                set(h, "Connect key", &self.key);
            }
            "Sync group" => set(
                h,
                "Sync group",
                "CN=Cloud Groups;OU=Staff;DC=example;DC=com",
            ),
            _ => {}
        }
    }

    /// A fresh wizard, walked with good values up to the page titled `stop`.
    fn wizard_at(&self, stop: &str) -> H {
        self.walk(wizard(&self.dir.join("agent.toml")), stop)
    }

    fn walk(&self, mut h: H, stop: &str) -> H {
        h.step();
        loop {
            let title = heading(&h);
            if title.ends_with(stop) {
                return h;
            }
            let page = title.split(": ").nth(1).unwrap_or_default().to_string();
            self.fill(&mut h, &page);
            next(&mut h);
        }
    }
}

fn fail_shown(h: &mut H, text: &str) {
    wait_for(h, &format!("a failure about `{text}`"), |h| {
        settled(h)
            && h.query_all_by_label_contains("Failed:").any(|n| {
                n.accesskit_node()
                    .value()
                    .or_else(|| n.accesskit_node().label())
                    .is_some_and(|t| t.contains(text))
            })
    });
    assert!(!next_enabled(h), "Next is enabled despite a failing check");
}

#[test]
fn root_dn_page_shows_a_bad_dn_and_another_domain_next_to_the_field() {
    let good = Good::new("bad-dn");
    let mut h = good.wizard_at("Root User container");
    // Lower-case types are normalised as you type, and what changed is said.
    set(&mut h, "Root User container", "ou=Staff;dc=example;dc=com");
    assert!(has(&h, "read with these changes"), "{}", screen(&h));
    set(&mut h, "Root User container", "OU=Staff;;DC=example;DC=com");
    assert!(has(&h, "at character"), "{}", screen(&h));
    assert!(has(
        &h,
        "What to do: Write it like CN=Users;DC=example;DC=com"
    ));
    assert!(!next_enabled(&h));
    // Valid, but not in the DC's domain.
    set(&mut h, "Root User container", "OU=Staff;DC=other;DC=com");
    fail_shown(&mut h, "is not in the DC's domain");
    // Fixed: the stale failure disappears with the next keystroke, then the check passes.
    set(&mut h, "Root User container", "OU=Staff;DC=example;DC=com");
    assert!(
        !has(&h, "Failed:"),
        "a stale result is shown for new input:\n{}",
        screen(&h)
    );
    assert!(has(&h, "Waiting to check") || has(&h, "Cancel check"));
    wait_page_passes(&mut h, "Root User container");
}

#[test]
fn account_page_refuses_a_wrong_password_and_a_privileged_account() {
    let good = Good::new("account");
    let mut h = good.wizard_at("Service account");
    // Nothing typed yet: the page does not scold.
    assert!(!has(&h, "Service account is empty"), "{}", screen(&h));
    h.key_press(egui::Key::Enter);
    h.step();
    h.step();
    assert!(has(&h, "Service account is empty"), "{}", screen(&h));
    set(
        &mut h,
        "Service account",
        &format!("EXAMPLE\\{}", accounts::TYPO),
    );
    // Typed key by key: no logon while the field has focus (a half-typed password would count
    // against the lockout threshold); leaving it with Enter tries it.
    h.get_by_label("Password").focus();
    h.step();
    h.get_by_label("Password").type_text("not-the-password-1");
    h.step();
    h.step();
    assert!(
        has(&h, "The logon is tried when you leave the password field"),
        "{}",
        screen(&h)
    );
    assert!(!has(&h, "Cancel check") && !has(&h, "Failed:"));
    h.key_press(egui::Key::Enter);
    fail_shown(&mut h, "the user name or password is wrong");
    set(
        &mut h,
        "Service account",
        &format!("EXAMPLE\\{}", accounts::DOMAIN_ADMIN),
    );
    set(&mut h, "Password", testbed::SVC_PASSWORD);
    fail_shown(&mut h, "Domain Admins");
    assert!(has(&h, "What to do:"));
    assert!(!screen(&h).contains(testbed::SVC_PASSWORD));
}

#[test]
fn connect_key_page_flags_a_typo_at_once_accepts_a_pasted_key_and_refuses_a_used_one() {
    let good = Good::new("key");
    let cloud = support::cloud::shared();
    let mut h = good.wizard_at("Connect key");
    set(&mut h, "Cloud URL", &cloud.url);
    set(
        &mut h,
        "Cloud CA file (optional)",
        &cloud.ca.display().to_string(),
    );
    // One character changed: refused on the page, before the cloud is asked.
    let mut typo: Vec<char> = good.key.chars().collect();
    let i = typo.len() - 6;
    typo[i] = if typo[i] == 'A' { 'B' } else { 'A' };
    set(&mut h, "Connect key", &typo.into_iter().collect::<String>());
    assert!(has(&h, "Connect key: "), "{}", screen(&h));
    assert!(
        !has(&h, "reached"),
        "the cloud was asked about a key with a typo"
    );
    assert!(!next_enabled(&h));
    // Pasted with spaces and a line break: fine.
    let pasted = format!(" {}\n{} ", &good.key[..10], &good.key[10..]);
    set(&mut h, "Connect key", "");
    h.get_by_label("Connect key").focus();
    h.step();
    h.event(egui::Event::Paste(pasted));
    h.step();
    assert!(has(&h, "Format and checksum are right"), "{}", screen(&h));
    wait_page_passes(&mut h, "Connect key");
    // Used by another agent: a distinct message.
    let used = cloud.issue_key("DC=example,DC=com", None);
    cloud.use_up(&used, "DC=example,DC=com");
    set(&mut h, "Connect key", &used);
    fail_shown(&mut h, "the key was already used");
}

/// Behind a proxy: the cloud's name resolves only at the proxy. The page's proxy section
/// refuses a URL holding a password, asks for the proxy's password once a user is given, and
/// the cloud checks then pass through the proxy, as the installed service will go.
#[test]
fn connect_key_page_checks_the_cloud_through_the_proxy_typed_there() {
    const NAME: &str = "cloud.wizard-proxy.invalid";
    let good = Good::new("proxy");
    let cloud = support::cloud::with_domains(support::cloud::CloudServer::start(
        "wizard-proxied",
        &["--name", NAME],
    ));
    let proxy = support::proxy::ConnectProxy::start(
        "wiz",
        "Wizard-Pr0xy-pw",
        &[(
            NAME,
            std::net::SocketAddr::from(([127, 0, 0, 1], cloud.port())),
        )],
    );
    let key = cloud.issue_key("DC=example,DC=com", None);
    let mut h = good.wizard_at("Connect key");
    set(
        &mut h,
        "Cloud URL",
        &format!("https://{NAME}:{}", cloud.port()),
    );
    set(
        &mut h,
        "Cloud CA file (optional)",
        &cloud.ca.display().to_string(),
    );
    set(&mut h, "Connect key", &key);
    // Directly, the name resolves nowhere.
    fail_shown(&mut h, "does not resolve");
    click(&mut h, "Proxy (none: the cloud is contacted directly)");
    h.run_steps(5);
    set(
        &mut h,
        "Proxy URL (optional)",
        "http://wiz:secret@127.0.0.1:1",
    );
    assert!(
        has(&h, "must not hold a user name or password"),
        "{}",
        screen(&h)
    );
    assert!(!next_enabled(&h));
    set(&mut h, "Proxy URL (optional)", &proxy.url());
    set(&mut h, "Proxy user (optional)", "wiz");
    h.step();
    assert!(!next_enabled(&h), "the proxy's password is asked for");
    set(&mut h, "Proxy password", "Wizard-Pr0xy-pw");
    wait_page_passes(&mut h, "Connect key");
    unfold_passed(&mut h);
    assert!(has(&h, "reached the proxy"), "{}", screen(&h));
    assert!(proxy.tunnels() >= 1, "{:?}", proxy.request_lines());
    assert!(!screen(&h).contains("Wizard-Pr0xy-pw"));
}

#[test]
fn sync_page_refuses_a_missing_group_and_a_distribution_group() {
    let good = Good::new("sync");
    let mut h = good.wizard_at("Sync group");
    set(
        &mut h,
        "Sync group",
        "CN=No Such Group;OU=Staff;DC=example;DC=com",
    );
    fail_shown(&mut h, "does not exist");
    set(
        &mut h,
        "Sync group",
        &testbed::GROUP_DISTRIBUTION.replace(',', ";"),
    );
    fail_shown(&mut h, "distribution");
}

/// An installed config (no secrets) and, when `password` is given, the secret store beside it.
#[test]
fn install_page_shows_each_step_and_finish_shows_where_everything_is() {
    let good = Good::new("install");
    let prefix = good.dir.join("root");
    let config = PathBuf::from("/etc/ad-sync/agent.toml");
    let mut h = good.walk(wizard_in(&config, Some(prefix.clone())), "Review");
    wait_for(&mut h, "the review checks", |h| {
        settled(h) && !h.get_by_label("Install").accesskit_node().is_disabled()
    });
    click(&mut h, "Install");
    h.step();
    h.step();
    assert!(
        heading(&h).contains("Step 12 of 13: Install"),
        "{}",
        screen(&h)
    );
    wait_text(&mut h, "Installed. Next shows where everything is.");
    for title in [
        "Install the agent program: done",
        "Store the service account's password: done",
        "Write the configuration: done",
        "Write the service unit: done",
        "Enroll the agent with the cloud: done",
    ] {
        assert!(
            has(&h, title),
            "{title}
{}",
            screen(&h)
        );
    }
    assert!(!has(&h, "Back"), "no way back once installed");
    next(&mut h);
    assert!(
        heading(&h).contains("Step 13 of 13: Finish"),
        "{}",
        screen(&h)
    );
    let shown = screen(&h);
    assert!(
        shown.contains(&prefix.join("etc/ad-sync/agent.toml").display().to_string()),
        "{shown}"
    );
    assert!(shown.contains("agt-"), "{shown}");
    assert!(shown.contains("As the cloud sees it"), "{shown}");
    // One Close, and the long lines (paths, the secret store, the service's command) wrap.
    assert_eq!(h.query_all_by_label("Close").count(), 1, "{shown}");
    assert_nothing_cut(&h, "Finish");
    assert!(
        shown.contains(&ad_sync::secrets::Protection::detect().words()),
        "{shown}"
    );
    assert!(
        !shown.contains(testbed::SVC_PASSWORD) && !shown.contains(&good.key),
        "{shown}"
    );
    // The import is offered: its preview runs the installed agent and changes nothing.
    assert!(
        shown.contains("Import AD into the cloud (optional)"),
        "{shown}"
    );
    // Nothing is imported before a preview: Import now appears with the preview's counts.
    assert!(!has(&h, "Import now"), "{shown}");
    click(&mut h, "Preview the import");
    wait_text(&mut h, "Import preview");
    let shown = screen(&h);
    // The test domain's Staff OU holds only groups the import must skip: the counts say so,
    // and with nothing to write there is nothing to confirm.
    assert!(
        shown.contains("groups: 2 skipped"),
        "the preview's counts: {shown}"
    );
    assert!(
        shown.contains("Import preview: there is nothing new to import."),
        "{shown}"
    );
    assert!(!has(&h, "Import now"), "{shown}");
    assert!(
        shown.contains("group Mailing List would be skipped: it is a distribution group"),
        "{shown}"
    );
    assert!(
        !shown.contains(testbed::SVC_PASSWORD) && !shown.contains(&good.key),
        "{shown}"
    );
    // The wizard's setup log, beside the agent's: the install's checks, steps and result, no
    // secret.
    let setup_log =
        std::fs::read_to_string(prefix.join("var/log/ad-sync/setup.log")).unwrap_or_default();
    assert!(
        setup_log.contains("install (wizard)")
            && setup_log.contains("step Enroll the agent with the cloud done")
            && setup_log.contains("result: installed (agent agt-"),
        "{setup_log}"
    );
    assert!(
        !setup_log.contains(testbed::SVC_PASSWORD) && !setup_log.contains(&good.key),
        "{setup_log}"
    );
    // What the page says is there, is there.
    let store = ad_sync::secrets::FileStore::new(prefix.join("etc/ad-sync/secrets"));
    assert!(store.read(ad_sync::secrets::AGENT_CREDENTIAL).is_ok());
    assert!(
        prefix
            .join("etc/systemd/system/ad-sync-agent.service")
            .is_file()
    );
    drop(h);

    // Setup again: review mode, and from there the product is removed (after a confirmation),
    // the cloud told first, each step shown as it finishes; the config is kept when asked.
    let mut h = wizard_in(&config, Some(prefix.clone()));
    h.step();
    assert!(heading(&h).contains("Review"), "{}", screen(&h));
    wait_text(&mut h, "Agent status:");
    // The review checks finish first: a result arriving above would move what is clicked below.
    wait_for(&mut h, "the review checks", |h| settled(h) && passed(h));
    click(&mut h, "Remove ad-sync…");
    wait_text(&mut h, "Installing again needs a new connect key");
    click(
        &mut h,
        "Keep the configuration file (for a later install with the same settings)",
    );
    h.run_steps(2);
    click(&mut h, "Remove now");
    wait_text(&mut h, "ad-sync was removed from this server");
    let shown = screen(&h);
    assert!(shown.contains("Deregister the agent"), "{shown}");
    assert!(
        h.get_by_label("Install").accesskit_node().is_disabled(),
        "nothing to go on to: {shown}"
    );
    assert!(
        !prefix
            .join("etc/systemd/system/ad-sync-agent.service")
            .exists()
            && store.read(ad_sync::secrets::AGENT_CREDENTIAL).is_err(),
        "{shown}"
    );
    assert!(
        prefix.join("etc/ad-sync/agent.toml").is_file(),
        "the config was kept: {shown}"
    );
}

#[test]
fn a_failed_install_shows_the_rollback_and_allows_going_back() {
    let good = Good::new("install-fail");
    let prefix = good.dir.join("root");
    // The unit's folder is a file: the unit step fails after the config was written.
    std::fs::create_dir_all(prefix.join("etc/systemd")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(prefix.join("etc/systemd/system"), "x").unwrap_or_else(|e| panic!("{e}"));
    let config = PathBuf::from("/etc/ad-sync/agent.toml");
    let mut h = good.walk(wizard_in(&config, Some(prefix.clone())), "Review");
    wait_for(&mut h, "the review checks", |h| {
        settled(h) && !h.get_by_label("Install").accesskit_node().is_disabled()
    });
    click(&mut h, "Install");
    wait_text(&mut h, "Every step was undone");
    assert!(has(&h, "Write the configuration: undone"), "{}", screen(&h));
    assert!(has(&h, "Write the service unit: failed"), "{}", screen(&h));
    assert!(
        has(&h, "Enroll the agent with the cloud: not run"),
        "{}",
        screen(&h)
    );
    assert!(!prefix.join("etc/ad-sync/agent.toml").exists());
    click(&mut h, "< Back");
    h.step();
    h.step();
    assert!(heading(&h).contains("Review"), "{}", screen(&h));
}

fn installed(name: &str, password: Option<&str>) -> PathBuf {
    let bed = support::bed();
    let cloud = support::cloud::shared();
    let dir = tmp(name);
    let config = dir.join("agent.toml");
    let text = format!(
        "version = 1\n\n[server]\ntype = \"member\"\ndc_host = \"{}\"\n\n[ldap]\nsecurity = \"ldaps\"\nca_file = '{}'\n\n\
         [directory]\nroot_user_dn = 'OU=Staff;DC=example;DC=com'\nsync_group_dn = 'CN=Cloud Groups;OU=Staff;DC=example;DC=com'\n\n\
         [service_account]\nusername = 'EXAMPLE\\{}'\n\n[cloud]\nurl = '{}'\nca_file = '{}'\n\n[install]\ndir = '{}'\n",
        testbed::DC1_HOST,
        bed.dc1.ca_file.display(),
        accounts::GOOD,
        cloud.url,
        cloud.ca.display(),
        dir.join("program").display()
    );
    std::fs::write(&config, text).unwrap_or_else(|e| panic!("{e}"));
    // An enrolled agent: the record and its two secrets (as the install step leaves them).
    enrolled(&dir, &cloud.url);
    if let Some(pw) = password {
        use std::os::unix::fs::PermissionsExt;
        let secrets = dir.join("secrets");
        std::fs::create_dir_all(&secrets).unwrap_or_else(|e| panic!("{e}"));
        let file = secrets.join(ad_sync::secrets::SERVICE_ACCOUNT_PASSWORD);
        std::fs::write(&file, pw).unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    config
}

fn enrolled(dir: &Path, cloud_url: &str) {
    use std::os::unix::fs::PermissionsExt;
    let record = ad_sync::install::enrollment::Record {
        state: ad_sync::install::enrollment::State::Enrolled,
        agent_id: Some("agt-test".into()),
        cloud_url: cloud_url.into(),
        domain: "DC=example,DC=com".into(),
        public_key: "not-used-here".into(),
        updated_at: "2026-11-22T00:00:00Z".into(),
    };
    record
        .write(&dir.join("enrollment.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap_or_else(|e| panic!("{e}"));
    for name in [
        ad_sync::secrets::AGENT_CREDENTIAL,
        ad_sync::secrets::AGENT_PRIVATE_KEY,
    ] {
        let file = secrets.join(name);
        std::fs::write(&file, "placeholder").unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn review_mode_revalidates_the_installed_config_without_a_connect_key() {
    let config = installed("review", Some(testbed::SVC_PASSWORD));
    let mut h = wizard(&config);
    h.step();
    assert!(
        heading(&h).contains("Step 11 of 13: Review"),
        "{}",
        screen(&h)
    );
    assert!(has(&h, "Upgrade: reviewing the configuration"));
    // The test wrote the password as a clear 0600 file, and the page says so.
    wait_text(
        &mut h,
        "(from not encrypted at rest: root-only files (0600) in",
    );
    wait_for(&mut h, "the review checks", |h| settled(h) && passed(h));
    assert!(!has(&h, "Failed:"), "{}", screen(&h));
    // Every check but the connect key's and the first sync's preview (read with a key): the
    // agent is enrolled already, and nothing it leaves out keeps Install from going on.
    assert!(has(&h, "23 checks passed"), "{}", screen(&h));
    assert!(has(&h, "No connect key is checked"));
    assert!(!has(&h, "Not ready to install"), "{}", screen(&h));
    assert!(!has(&h, "Not checked"), "{}", screen(&h));
    // Into the pages to change a setting; the connect key page asks for no key.
    h.get_by_label("Change settings").click_accesskit();
    h.step();
    h.step();
    assert!(
        heading(&h).contains("Destination folder"),
        "{}",
        heading(&h)
    );
    loop {
        let title = heading(&h);
        if title.ends_with("Connect key") {
            break;
        }
        if title.ends_with("Service account") {
            // The same account is required on an upgrade.
            set(
                &mut h,
                "Service account",
                &format!("EXAMPLE\\{}", accounts::EXPIRING),
            );
            fail_shown_local(&mut h, "is not the installed one");
            set(
                &mut h,
                "Service account",
                &format!("{}@example.com", accounts::GOOD),
            );
        }
        next(&mut h);
    }
    assert!(has(&h, "no connect key is needed"), "{}", screen(&h));
    assert!(h.query_by_label("Connect key").is_none());
    wait_page_passes(&mut h, "Connect key");
}

fn fail_shown_local(h: &mut H, text: &str) {
    wait_for(h, text, |h| has(h, text));
    assert!(!next_enabled(h));
}

#[test]
fn review_mode_asks_for_the_password_when_the_store_cannot_be_read() {
    let config = installed("review-nostore", None);
    let mut h = wizard(&config);
    wait_text(&mut h, "The stored password could not be read");
    assert!(
        has(&h, "the service account's password is needed"),
        "{}",
        screen(&h)
    );
    set(&mut h, "Password", testbed::SVC_PASSWORD);
    wait_for(&mut h, "the review checks", |h| settled(h) && passed(h));
    assert!(!has(&h, "Failed:"), "{}", screen(&h));
}

/// Whether the other end closed `s` within 5 s. A TLS ClientHello may have been sent first,
/// so everything up to the end is read.
fn closed_by_peer(mut s: std::net::TcpStream) -> bool {
    use std::io::Read;
    if s.set_read_timeout(Some(Duration::from_secs(5))).is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Threads named `name` in this process.
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == name)
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn ui_keeps_drawing_and_cancel_works_while_a_check_waits_on_a_server_that_never_answers() {
    // Accepts connections and never says a word.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let held = Arc::new(std::sync::Mutex::new(Vec::<std::net::TcpStream>::new()));
    let keep = Arc::clone(&held);
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            if let Ok(mut v) = keep.lock() {
                v.push(s);
            }
        }
    });
    let accepted = |n: usize| held.lock().map(|v| v.len() >= n).unwrap_or(false);

    let good = Good::new("hang");
    let mut h = good.wizard_at("Connection security");
    good.fill(&mut h, "Connection security");
    set(&mut h, "Port (empty for the default)", &port.to_string());
    wait_for(&mut h, "the check to connect to the silent server", |h| {
        has(h, "Cancel check") && accepted(1)
    });
    // The check is in flight, and frames keep coming: each step is a full frame.
    for _ in 0..60 {
        h.step();
    }
    assert!(
        has(&h, "Cancel check"),
        "the check finished against a silent server?\n{}",
        screen(&h)
    );
    click(&mut h, "Cancel check");
    h.step();
    h.step();
    assert!(has(&h, "Check cancelled."), "{}", screen(&h));
    assert!(!next_enabled(&h));
    // Every connection the check opened is closed by the client.
    let streams: Vec<std::net::TcpStream> = held
        .lock()
        .map(|mut v| v.drain(..).collect())
        .unwrap_or_default();
    assert!(!streams.is_empty());
    for s in streams {
        assert!(
            closed_by_peer(s),
            "a cancelled check left its connection open"
        );
    }

    // Again, and this time the window closes mid-check: no thread, no connection left behind.
    click(&mut h, "Retry check");
    wait_for(&mut h, "the retried check to connect", |h| {
        has(h, "Cancel check") && accepted(1)
    });
    let name = h.state().state().validator.thread_name().to_string();
    assert!(threads_named(&name) > 0, "no checker thread named {name}");
    drop(h);
    // The runtime has been shut down and its blocking threads told to stop; one may still be
    // between its last instruction and its exit for a moment. Any left after a second outlived
    // the window.
    let deadline = Instant::now() + Duration::from_secs(1);
    while threads_named(&name) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        threads_named(&name),
        0,
        "checker threads outlived the window"
    );
    let streams: Vec<std::net::TcpStream> = held
        .lock()
        .map(|mut v| v.drain(..).collect())
        .unwrap_or_default();
    for s in streams {
        assert!(
            closed_by_peer(s),
            "closing the window left a connection open"
        );
    }
}

#[test]
fn enter_is_next_and_escape_asks_before_leaving() {
    let dir = tmp("keys");
    let mut h = wizard(&dir.join("agent.toml"));
    h.step();
    h.key_press(egui::Key::Enter);
    h.step();
    h.step();
    assert!(
        heading(&h).contains("Destination folder"),
        "{}",
        heading(&h)
    );
    h.key_press(egui::Key::Escape);
    h.step();
    h.step();
    assert!(has(&h, "Leave setup?"), "{}", screen(&h));
    assert!(has(&h, "no connect key was used"));
    click(&mut h, "Continue setup");
    h.step();
    h.step();
    assert!(!has(&h, "Leave setup?"));
    assert!(heading(&h).contains("Destination folder"));
}

/// A backend that answers at once with fixed results. It is for the snapshots only, which must
/// not depend on a certificate made at provisioning or a port picked at start-up; every
/// behaviour above runs against the real servers.
#[derive(Default, Clone, Copy)]
struct Fixed {
    /// A check that fails, and one that warns (the snapshots of those states).
    fail: Option<&'static str>,
    warn: Option<&'static str>,
}

/// What the installed agent's `status` says in the pictures: in review mode, a run that held
/// three deletions and failed a change; on Finish, the first sync a quarter done.
fn fixed_status(offline: bool) -> ad_sync::status::AgentStatus {
    use ad_sync::status::{AgentStatus, Failure, HeldItem, Light};
    let held = |name: &str| HeldItem {
        id: format!("u-{name}"),
        kind: "user".into(),
        name: name.into(),
        action: "delete".into(),
        dn: format!("CN={name},OU=Staff,DC=example,DC=com"),
        since: "2026-12-04T09:12:00Z".into(),
    };
    let mut st = AgentStatus {
        agent_id: Some("agt-7q2m4k9x1c3vb".into()),
        cloud_url: Some("https://cloud.example.com".into()),
        state_path: "/var/lib/ad-sync/state.db".into(),
        state_found: true,
        role: Some("primary".into()),
        last_run: Some("2026-12-04T09:12:00Z".into()),
        last_success: Some("2026-12-03T17:40:00Z".into()),
        last_run_unix: Some(1_764_839_520),
        managed_users: 1240,
        managed_groups: 86,
        held: vec![held("d.okafor"), held("j.lindqvist"), held("m.reyes")],
        failed: 1,
        failures: vec![Failure {
            what: "change 4182".into(),
            reason: "user carla: CN=carla,OU=Staff,DC=example,DC=com exists and is not managed by ad-sync; rename one of them, or let the agent take it over ([sync] adopt_users)".into(),
        }],
        light: Light::Amber,
        headline: "3 disconnections are held by the deletion threshold, and the last run failed 1 change".into(),
        fix: Some("Review them with ad-sync-agent pending --config FILE and approve them there, or raise the threshold; the failed change says what to fix.".into()),
        ..AgentStatus::default()
    };
    if offline {
        st.held.clear();
        st.failed = 0;
        st.failures.clear();
        st.last_run_unix = None;
        st.running = Some(ad_sync::progress::Progress {
            task: ad_sync::progress::Task::Sync,
            phase: ad_sync::progress::Phase::Applying,
            done: 310,
            total: Some(1240),
            dry_run: false,
            started: 1_764_839_445,
            at: 1_764_839_520,
        });
    }
    st
}

impl Fixed {
    /// How each page's main check fails, in the words the real check uses for that case.
    fn failure(id: &str) -> (&'static str, &'static str, &'static str) {
        match id {
            "dc.resolve" => (
                "`dc9.example.com` does not resolve",
                "This host's DNS server answered that the name does not exist (NXDOMAIN).",
                "Check the name, or pick one of the domain controllers DNS lists below.",
            ),
            "ldap.tls" => (
                "the certificate of dc1.example.com is not trusted",
                "It was issued by Example Enterprise CA, which is not among this machine's trusted roots, and no CA file is given.",
                "Export the CA's certificate (Base-64 .cer) on the CA, and choose it under Trust this CA file.",
            ),
            "root_dn.exists" => (
                "`OU=Staff,DC=example,DC=com` does not exist",
                "The DC answered noSuchObject (32); the nearest container that exists is DC=example,DC=com.",
                "Pick the container in the tree, or create the OU in Active Directory Users and Computers first.",
            ),
            "connect_key.valid" => (
                "connect key ADS1-…-0W9C has expired",
                "It was issued on 2026-11-20 and was valid for 7 days; nothing was enrolled with it.",
                "Issue a new connect key in the cloud's admin console and paste it here.",
            ),
            "sync_group.exists" => (
                "`CN=Cloud Groups,OU=Staff,DC=example,DC=com` does not exist",
                "The DC answered noSuchObject (32).",
                "Pick an existing security group below, or create the group first.",
            ),
            _ => (
                "could not log on as `svc-sync@example.com`: the user name or password is wrong",
                "The DC answered LDAP error 49 (invalid credentials, data 52e).",
                "Check the password of `svc-sync` in Active Directory Users and Computers, and that the account is not locked out; then type it again.",
            ),
        }
    }

    fn summary(id: &str) -> &'static str {
        match id {
            "dc.resolve" => "dc1.example.com resolves to 10.0.0.10",
            "dc.reachable" => "dc1.example.com answers on port 636",
            "dc.writable" => "dc1.example.com is a writable domain controller of example.com",
            "ldap.tls" => "LDAPS to dc1.example.com is encrypted and its certificate is trusted",
            "ldap.fallback" => "not needed: the secure connection works",
            "ldap.bind" => "logged on as `svc-sync@example.com`",
            "account.not_privileged" => "`svc-sync` is in no administrative group",
            "account.name" => "`svc-sync` is not a reserved name",
            "account.admincount" => "`svc-sync` has no adminCount",
            "account.enabled" => "`svc-sync` is enabled and does not expire",
            "account.password_expiry" => "the password of `svc-sync` never expires",
            "root_dn.exists" => "OU=Staff,DC=example,DC=com exists and is a container",
            "root_dn.domain_matches" => "OU=Staff,DC=example,DC=com is in the DC's domain",
            "root_dn.delegation" => "`svc-sync` may create users and groups there",
            "dn.root" => "Root User container `OU=Staff;DC=example;DC=com` is a valid DN",
            "dn.sync_group" => "sync group is a valid DN",
            "sync_group.exists" => "CN=Cloud Groups,OU=Staff,DC=example,DC=com exists",
            "sync_group.is_security_group" => "CN=Cloud Groups is a security group",
            "domain.tier0" => {
                "who holds power in the domain was read: 41 accounts and groups are Tier 0"
            }
            "password_policy" => "minimum length 7, complexity on, lockout after 5",
            "cloud.reachable" => "reached cloud.example.com at 203.0.113.5:443",
            "cloud.tls" => "the cloud's certificate is trusted; agent API v1",
            "connect_key.format" => "connect key ADS1-…-0W9C is well formed",
            "connect_key.valid" => "connect key ADS1-…-0W9C is unused and valid for 7 days",
            "connect_key.domain_matches" => "the key is for DC=example,DC=com, this AD domain",
            "source.scope" => "the scope selects 1,240 users",
            "source.changes" => {
                "AD's changes are read with DirSync: each change once, a group's members value by value"
            }
            "mapping.attributes" => "the 13 mapped attributes exist in AD's schema",
            _ => "passed",
        }
    }
}

impl ad_sync::wizard::backend::Backend for Fixed {
    fn preflight(
        &self,
        _answers: ad_sync::answers::Answers,
        scope: ad_sync::preflight::Scope,
    ) -> ad_sync::wizard::backend::BoxFuture<ad_sync::preflight::Report> {
        use ad_sync::preflight::{CheckResult, Report, Scope, ids};
        let checks = ids::ALL
            .iter()
            .chain(ids::SOURCE.iter())
            .filter(|id| match scope {
                Scope::Source => ids::SOURCE.contains(id),
                _ if ids::SOURCE.contains(id) => false,
                Scope::All => true,
                Scope::Cloud => ids::CLOUD.contains(id),
                Scope::Directory => !ids::CLOUD.contains(id),
                Scope::Connection => {
                    id.starts_with("dc.")
                        || id.starts_with("ldap.") && **id != ids::LDAP_BIND
                        || **id == ids::ROOT_DN_DOMAIN_MATCHES
                }
            })
            .map(|id| {
                if self.fail == Some(*id) {
                    let (summary, detail, fix) = Fixed::failure(id);
                    let mut c = CheckResult::pass(id, summary, "");
                    c.status = ad_sync::preflight::Status::Fail;
                    c.detail = detail.into();
                    c.fix = fix.into();
                    c
                } else if self.warn == Some(*id) {
                    let mut c = CheckResult::pass(id, "the password of `svc-sync` expires in 9 days", "");
                    c.status = ad_sync::preflight::Status::Warn;
                    c.detail = "When it expires the agent can no longer log on, and syncing stops.".into();
                    c.fix = "Set Password never expires on the account, or give it a fine-grained password policy without expiry.".into();
                    c
                } else {
                    CheckResult::pass(id, Fixed::summary(id), "")
                }
            })
            .collect();
        Box::pin(async move {
            Report {
                checks,
                stats: Default::default(),
            }
        })
    }

    fn certificate(
        &self,
        _host: String,
        _port: u16,
        _starttls: bool,
        _timeout: Duration,
    ) -> ad_sync::wizard::backend::BoxFuture<Result<ad_sync::directory::cert::CertInfo, String>>
    {
        Box::pin(async {
            Ok(ad_sync::directory::cert::CertInfo {
                // Samba's own certificates carry long names: they must wrap, never run off.
                subject: "O=Samba Administration, OU=Samba - temporary autogenerated HOST certificate, CN=DC1.example.com".into(),
                issuer: "O=Samba Administration, OU=Samba - temporary autogenerated CA certificate, CN=DC1.example.com".into(),
                dns_names: vec!["dc1.example.com".into(), "example.com".into()],
                not_before: "2026-01-01 00:00 UTC".into(),
                not_after: "2027-01-01 00:00 UTC".into(),
                not_before_unix: 0,
                not_after_unix: 0,
                sha256: "3F:A1:09:6C:2B:D4:77:E0:11:5A:C8:92:4E:0B:DD:61:8F:20:73:C5:A9:34:E6:1D:50:BB:07:9E:C2:48:F1:6A".into(),
                self_signed: false,
                revocation: vec!["CRL http://pki.example.com/CertEnroll/Example%20Enterprise%20CA.crl".into()],
            })
        })
    }

    fn discover(
        &self,
        _domain: String,
        _server: Option<std::net::IpAddr>,
        _timeout: Duration,
    ) -> ad_sync::wizard::backend::BoxFuture<Result<ad_sync::directory::discover::Discovered, String>>
    {
        use ad_sync::directory::discover::{DcCandidate, Discovered};
        let dc = |host: &str, weight: u16, in_site: bool| DcCandidate {
            host: host.into(),
            port: 389,
            priority: 0,
            weight,
            in_site,
        };
        Box::pin(async move {
            Ok(Discovered {
                dcs: vec![
                    dc("dc1.example.com", 100, true),
                    dc("dc2.example.com", 100, false),
                ],
                site: Some("Default-First-Site-Name".into()),
                site_note: None,
            })
        })
    }

    fn level(
        &self,
        _answers: ad_sync::answers::Answers,
        base: Option<String>,
        offer: ad_sync::directory::browse::Offer,
        _name: String,
        _limit: usize,
    ) -> ad_sync::wizard::backend::BoxFuture<Result<ad_sync::directory::browse::Level, String>>
    {
        use ad_sync::directory::browse::{Kind, Level, Node, Offer};
        let node = |dn: &str, name: &str, kind: Kind, why: Option<&str>| Node {
            dn: dn.into(),
            name: name.into(),
            kind,
            unpickable: why.map(str::to_string),
        };
        let base = base.unwrap_or_else(|| "DC=example,DC=com".into());
        let nodes = match (base.as_str(), offer) {
            ("DC=example,DC=com", _) => vec![
                node(
                    "CN=Computers,DC=example,DC=com",
                    "Computers",
                    Kind::Container,
                    None,
                ),
                node(
                    "OU=Domain Controllers,DC=example,DC=com",
                    "Domain Controllers",
                    Kind::OrganizationalUnit,
                    None,
                ),
                node(
                    "OU=Staff,DC=example,DC=com",
                    "Staff",
                    Kind::OrganizationalUnit,
                    None,
                ),
                node("CN=Users,DC=example,DC=com", "Users", Kind::Container, None),
            ],
            (_, Offer::Groups | Offer::ScopeGroups) => vec![
                node(
                    &format!("OU=Contractors,{base}"),
                    "Contractors",
                    Kind::OrganizationalUnit,
                    Some("an organizational unit, not a group"),
                ),
                node(
                    &format!("CN=Cloud Groups,{base}"),
                    "Cloud Groups",
                    Kind::Group { security: true },
                    None,
                ),
                node(
                    &format!("CN=Mailing List,{base}"),
                    "Mailing List",
                    Kind::Group { security: false },
                    Some(if offer == Offer::ScopeGroups {
                        "a distribution group: the scope takes security groups"
                    } else {
                        "a distribution group: it has no security identity, so AD cannot grant access through it; choose a security group"
                    }),
                ),
            ],
            _ => vec![node(
                &format!("OU=Contractors,{base}"),
                "Contractors",
                Kind::OrganizationalUnit,
                None,
            )],
        };
        Box::pin(async move {
            Ok(Level {
                base,
                nodes,
                more: false,
            })
        })
    }

    fn folder(
        &self,
        dir: PathBuf,
    ) -> ad_sync::wizard::backend::BoxFuture<ad_sync::preflight::CheckResult> {
        Box::pin(async move {
            ad_sync::preflight::CheckResult::pass(
                ad_sync::preflight::ids::INSTALL_FOLDER,
                format!("`{}` will be created by the install step", dir.display()),
                "",
            )
        })
    }

    fn stored_password(
        &self,
        _config: PathBuf,
    ) -> ad_sync::wizard::backend::BoxFuture<Result<ad_sync::secret::Secret, String>> {
        Box::pin(async { Err("no store in the snapshots".to_string()) })
    }

    fn agent_status(
        &self,
        _program: PathBuf,
        _config: PathBuf,
        _state_dir: PathBuf,
        offline: bool,
    ) -> ad_sync::wizard::backend::BoxFuture<Result<ad_sync::status::AgentStatus, String>> {
        Box::pin(async move { Ok(fixed_status(offline)) })
    }
}

fn fixed_wizard(ppp: f32) -> H {
    fixed_wizard_with(ppp, Arc::new(Fixed::default()))
}

/// The config the pictures' wizard is set up for: the product's own path, so the pictures say
/// what an administrator reads. Nothing is installed or read there (the pictures' wizard is
/// not elevated, and the test checks nothing is there to be reviewed).
const SNAPSHOT_CONFIG: &str = "/etc/ad-sync/agent.toml";

fn fixed_wizard_with(ppp: f32, backend: Arc<dyn ad_sync::wizard::backend::Backend>) -> H {
    assert!(
        !Path::new(SNAPSHOT_CONFIG).exists(),
        "{SNAPSHOT_CONFIG} exists: ad-sync is installed on this machine, and the pictures would show its review; run the tests where it is not installed"
    );
    Harness::builder()
        .with_size(egui::vec2(800.0, 600.0))
        .with_pixels_per_point(ppp)
        .with_max_steps(20)
        .build_eframe(move |cc| {
            let options = Options {
                config_path: PathBuf::from(SNAPSHOT_CONFIG),
                backend,
                elevated: false,
                debounce: Duration::from_millis(1),
                bench: None,
                prefix: None,
                // Where a package puts the program: the same words on every machine (not
                // cargo's target folder, which is wherever the checkout is).
                agent_dir: Some(PathBuf::from("/usr/lib/ad-sync")),
                dns_server: Ok(None),
                host_domain: Some("example.com".into()),
                ui_dump: None,
                bench_page: None,
            };
            WizardApp::new(&cc.egui_ctx, options).unwrap_or_else(|e| panic!("{e}"))
        })
}

/// The values typed on each page of the snapshot walk.
const SNAPSHOT_PAGES: [(&str, &[(&str, &str)]); 11] = [
    ("01-welcome", &[]),
    ("02-folder", &[("Destination folder", "/opt/ad-sync")]),
    ("03-server-type", &[]),
    ("04-domain-controller", &[]),
    ("05-connection", &[]),
    (
        "06-account",
        &[
            ("Service account", "svc-sync@example.com"),
            ("Password", "not-a-real-password"),
        ],
    ),
    ("07-root-dn", &[]),
    (
        "08-connect-key",
        &[
            ("Cloud URL", "https://cloud.example.com"),
            (
                "Connect key",
                "ADS1-1X07-XTM7-9ZBT-WJ6C-A644-2CXQ-MY1K-0W9C",
            ),
        ],
    ),
    ("09-sync-group", &[]),
    ("10-policies", &[]),
    ("11-review", &[]),
];

/// No text on screen runs past the window's left or right edge: every labelled node's rectangle
/// (accesskit gives it in physical pixels) lies within the window's width.
fn assert_nothing_cut(h: &H, page: &str) {
    let ppp = h.ctx.pixels_per_point();
    let width = h.ctx.content_rect().width();
    let cut: Vec<String> = h
        .query_all_by(|_| true)
        .filter_map(|n| {
            let node = n.accesskit_node();
            // A text field's own text scrolls inside the field, clipped there by design.
            if node.role() == egui::accesskit::Role::TextRun {
                return None;
            }
            let text = node.label().or_else(|| node.value())?;
            if text.trim().is_empty() {
                return None;
            }
            let b = node.bounding_box()?;
            let (x0, x1) = (b.x0 as f32 / ppp, b.x1 as f32 / ppp);
            (x1 > width + 0.5 || x0 < -0.5).then(|| format!("{text:?} spans x {x0:.0}..{x1:.0}"))
        })
        .collect();
    assert!(
        cut.is_empty(),
        "{page} at {ppp}x: text runs off the {width}-point window:\n{}",
        cut.join("\n")
    );
}

/// No text on screen carries Markdown marks or a check id (those belong in `--json` and the
/// logs): what the administrator reads is sentences.
fn assert_plain(h: &H, page: &str) {
    let text = screen(h);
    let ids: Vec<&str> = ad_sync::preflight::ids::ALL
        .iter()
        .copied()
        .chain([
            ad_sync::preflight::ids::INSTALL_FOLDER,
            "account.unchanged",
            "install.privileges",
        ])
        .filter(|id| text.contains(id))
        .collect();
    assert!(
        !text.contains('`') && !text.contains("**") && ids.is_empty(),
        "{page}: markup or a check id on screen ({ids:?}):\n{text}"
    );
}

/// Scrolls the page to its end when it runs below the window: the node lowest on the page is
/// brought into view. Returns whether there was a lower half.
fn scroll_to_end(h: &mut H) -> bool {
    let ppp = h.ctx.pixels_per_point();
    let height = h.ctx.content_rect().height();
    let lowest = h
        .query_all_by(|_| true)
        .filter_map(|n| {
            let node = n.accesskit_node();
            let label = node.label().or_else(|| node.value())?;
            let b = node.bounding_box()?;
            let (y0, y1) = (b.y0 as f32 / ppp, b.y1 as f32 / ppp);
            // The footer's buttons and words sit at the window's foot; they are not the page.
            let in_footer = y0 >= height - 52.0 && y1 <= height + 0.5;
            (!label.trim().is_empty() && b.x0 as f32 / ppp > 200.0 && !in_footer).then_some((y1, n))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let Some((bottom, node)) = lowest else {
        return false;
    };
    // The footer (52 points) holds the buttons; the page ends above it.
    if bottom <= height - 52.0 {
        return false;
    }
    node.scroll_to_me();
    h.run_steps(4);
    true
}

/// Walks every page of the fixed wizard (the tree and the group picker used, nothing typed
/// into a DN field) and checks that nothing runs off the window on any of them and nothing on
/// screen is markup or a check id; with `snapshots` each page is kept as a picture, and a
/// page taller than the window also by its lower half. `theme` names the pictures (`-dark`).
fn walk_fixed(ppp: f32, theme: egui::Theme, snapshots: bool) -> H {
    walk_fixed_with(ppp, theme, snapshots, Fixed::default(), "11-review")
}

fn walk_fixed_with(ppp: f32, theme: egui::Theme, snapshots: bool, backend: Fixed, stop: &str) -> H {
    let mut h = fixed_wizard_with(ppp, Arc::new(backend));
    h.ctx.set_theme(theme);
    h.step();
    let suffix = match theme {
        egui::Theme::Dark => "-dark",
        egui::Theme::Light => "",
    };
    for (name, fields) in SNAPSHOT_PAGES {
        for (label, value) in fields {
            set(&mut h, label, value);
        }
        match name {
            "04-domain-controller" => wait_for(&mut h, "the DC found to fill the field", |h| {
                h.get_by_label("Domain controller (FQDN)")
                    .value()
                    .as_deref()
                    == Some("dc1.example.com")
            }),
            "07-root-dn" => {
                wait_for(&mut h, "the tree", |h| h.query_by_label("Staff").is_some());
                h.run_steps(3);
                click(&mut h, "Staff");
                h.run_steps(2);
                click(&mut h, "Expand Staff");
                h.step();
            }
            "09-sync-group" => {
                wait_for(&mut h, "the groups", |h| {
                    h.query_by_label("Cloud Groups").is_some()
                });
                click(&mut h, "Cloud Groups");
                h.step();
            }
            _ => {}
        }
        // Two settled frames: the fixed backend answers on its own thread.
        wait_for(&mut h, "the page to settle", settled);
        h.run_steps(3);
        let shot = if name == stop && (backend.fail.is_some() || backend.warn.is_some()) {
            format!(
                "{name}-{}",
                if backend.fail.is_some() {
                    "failed"
                } else {
                    "warning"
                }
            )
        } else {
            name.to_string()
        };
        assert_nothing_cut(&h, &shot);
        assert_plain(&h, &shot);
        if snapshots {
            h.snapshot(format!("wizard/{shot}{suffix}"));
        }
        if scroll_to_end(&mut h) {
            assert_nothing_cut(&h, &format!("{shot} (lower half)"));
            assert_plain(&h, &format!("{shot} (lower half)"));
            if snapshots {
                h.snapshot(format!("wizard/{shot}-lower{suffix}"));
            }
        }
        if name == stop {
            break;
        }
        next(&mut h);
    }
    h
}

/// Pictures of the pages after Review: the install half done, then finished; Finish following
/// the first sync; review mode opening with a run that held deletions and failed a change.
fn after_review(h: &mut H, theme: egui::Theme) {
    use ad_sync::install::{InstallResult, StepReport, StepStatus};
    use ad_sync::wizard::nav::Page;
    let suffix = if theme == egui::Theme::Dark {
        "-dark"
    } else {
        ""
    };
    let shot = |h: &mut H, name: &str| {
        h.run_steps(3);
        assert_nothing_cut(h, name);
        assert_plain(h, name);
        h.snapshot(format!("wizard/{name}{suffix}"));
        if scroll_to_end(h) {
            assert_nothing_cut(h, &format!("{name} (lower half)"));
            assert_plain(h, &format!("{name} (lower half)"));
            h.snapshot(format!("wizard/{name}-lower{suffix}"));
        }
    };
    let s = h.state_mut().state_mut();
    let mut plan = s.plan_preview().clone();
    // As on a server where setup starts the service.
    plan.start = true;
    plan.not_started_because = None;
    let mut steps: Vec<StepReport> = plan.steps.iter().map(StepReport::pending).collect();
    for (i, st) in steps.iter_mut().enumerate() {
        st.status = match i {
            0..3 => StepStatus::Done,
            3 => StepStatus::Running,
            _ => StepStatus::Pending,
        };
    }
    s.install.run = Some(ad_sync::wizard::installer::InstallRun::shown(
        plan.clone(),
        steps.clone(),
        None,
        0,
    ));
    s.page = Page::Install;
    shot(h, "12-install");
    assert!(
        has(h, "Installing: 3 of"),
        "the install's progress with its counts:\n{}",
        screen(h)
    );
    for st in &mut steps {
        st.status = StepStatus::Done;
        st.message = "done".into();
    }
    let outcome = ad_sync::install::Outcome {
        result: InstallResult::Installed,
        steps: steps.clone(),
        agent_id: Some("agt-7q2m4k9x1c3vb".into()),
        error: None,
        fix: None,
        commands: Vec::new(),
        cloud_view: Some(ad_sync::cloud::api::AgentSelf {
            agent_id: "agt-7q2m4k9x1c3vb".into(),
            domain: "DC=example,DC=com".into(),
            host: "member1.example.com".into(),
            version: "0.1.0".into(),
            role: ad_sync::cloud::api::Role::Primary,
            health: "healthy".into(),
            enrolled_at: "2026-12-04T09:10:41Z".into(),
            last_seen: "2026-12-04T09:10:44Z".into(),
            heard_from: true,
        }),
        cloud_view_error: None,
    };
    let s = h.state_mut().state_mut();
    s.install.run = Some(ad_sync::wizard::installer::InstallRun::shown(
        plan,
        steps,
        Some(outcome),
        0,
    ));
    shot(h, "12-install-done");
    let s = h.state_mut().state_mut();
    s.page = Page::Finish;
    wait_for(h, "the first sync's progress", |h| {
        has(h, "Writing to AD: 310 of 1,240 operations done")
    });
    shot(h, "13-finish");
    // Review mode: the installed agent's status first, amber, with the held and the failed.
    let s = h.state_mut().state_mut();
    let answers = s.form.to_answers();
    s.setup.existing = ad_sync::wizard::state::Existing::Installed(Box::new(answers));
    s.setup.enrolled = true;
    s.install = Default::default();
    s.page = Page::Review;
    wait_for(h, "the agent's status", |h| {
        has(h, "Agent status: needs attention") && has(h, "would delete; held since")
    });
    assert!(has(h, "not managed by ad-sync"), "{}", screen(h));
    assert!(has(h, "Remove ad-sync"), "{}", screen(h));
    wait_for(h, "the page to settle", settled);
    // The walk left Review scrolled to its end: back to its top, where the status is.
    if let Some(n) = h.query_by_label_contains("Agent: 3 disconnections") {
        n.scroll_to_me();
    }
    h.run_steps(4);
    shot(h, "11-review-upgrade");
}

#[test]
fn the_container_tree_works_with_the_arrow_keys() {
    // The walk stops on the Root User container with Staff picked and open.
    let mut h = walk_fixed_with(
        1.0,
        egui::Theme::Light,
        false,
        Fixed::default(),
        "07-root-dn",
    );
    let field = |h: &H| {
        h.get_by_label("Root User container")
            .value()
            .unwrap_or_default()
    };
    assert!(field(&h).starts_with("OU=Staff"), "{}", field(&h));
    h.get_by_label("Staff").focus();
    h.run_steps(2);
    let press = |h: &mut H, key: egui::Key| {
        h.key_press(key);
        h.run_steps(4);
    };
    // Down: the next node, picked (the field follows, as Windows' tree view selects).
    press(&mut h, egui::Key::ArrowDown);
    assert!(
        field(&h).starts_with("OU=Contractors,OU=Staff"),
        "{}",
        screen(&h)
    );
    // Right opens it; Left closes it; Left again goes to its parent.
    press(&mut h, egui::Key::ArrowRight);
    wait_for(&mut h, "Contractors to open", |h| {
        has(h, "Collapse Contractors")
    });
    press(&mut h, egui::Key::ArrowLeft);
    assert!(has(&h, "Expand Contractors"), "{}", screen(&h));
    press(&mut h, egui::Key::ArrowLeft);
    assert!(field(&h).starts_with("OU=Staff"), "{}", field(&h));
    // Up: the node above Staff; Home: the domain itself.
    press(&mut h, egui::Key::ArrowUp);
    assert!(
        field(&h).starts_with("OU=Domain Controllers"),
        "{}",
        field(&h)
    );
    press(&mut h, egui::Key::Home);
    assert_eq!(field(&h), "DC=example,DC=com", "{}", screen(&h));
}

#[test]
fn snapshot_of_every_page() {
    let mut results = egui_kittest::SnapshotResults::new();
    for theme in [egui::Theme::Light, egui::Theme::Dark] {
        let mut h = walk_fixed(1.0, theme, true);
        results.extend_harness(&mut h);
        // A failing check and a warning to acknowledge, as the administrator sees them.
        for backend in [
            Fixed {
                fail: Some("ldap.bind"),
                warn: None,
            },
            Fixed {
                fail: None,
                warn: Some("account.password_expiry"),
            },
        ] {
            let mut h = walk_fixed_with(1.0, theme, true, backend, "06-account");
            if backend.fail.is_some() {
                assert!(has(&h, "What to do:"), "{}", screen(&h));
                assert!(
                    has(&h, "Next is not available yet: could not log on"),
                    "the footer says in words what blocks Next:\n{}",
                    screen(&h)
                );
            } else {
                assert!(
                    has(&h, "I understand this warning and want to go on"),
                    "{}",
                    screen(&h)
                );
            }
            results.extend_harness(&mut h);
        }
    }
    // Every page with a check, failing it: the sentence, what was found and what to do, and
    // the footer saying what blocks Next.
    for (page, id) in [
        ("04-domain-controller", "dc.resolve"),
        ("05-connection", "ldap.tls"),
        ("07-root-dn", "root_dn.exists"),
        ("08-connect-key", "connect_key.valid"),
        ("09-sync-group", "sync_group.exists"),
    ] {
        let backend = Fixed {
            fail: Some(id),
            warn: None,
        };
        let mut h = walk_fixed_with(1.0, egui::Theme::Light, true, backend, page);
        assert!(
            has(&h, "What to do:") && has(&h, "Next is not available yet"),
            "{page}:\n{}",
            screen(&h)
        );
        results.extend_harness(&mut h);
    }
    // Install and Finish, and review mode with the agent's status: states a picture cannot
    // reach without a real install, set as they stand at one moment.
    for theme in [egui::Theme::Light, egui::Theme::Dark] {
        let mut h = walk_fixed(1.0, theme, false);
        after_review(&mut h, theme);
        results.extend_harness(&mut h);
    }
    // HiDPI: every page at 1.5 and twice the pixel density, nothing cut; the welcome page kept.
    walk_fixed(1.5, egui::Theme::Light, false);
    walk_fixed(2.0, egui::Theme::Light, false);
    let mut hi = fixed_wizard(2.0);
    hi.step();
    hi.run_steps(3);
    hi.snapshot("wizard/01-welcome-hidpi");
    results.extend_harness(&mut hi);
    results.unwrap();
}

/// With AD as a source, the policies page's direction adds the AD source page (scope, filter,
/// protected accounts named, the attribute map with a row remapped and one switched off),
/// checked with the scope's count; Review lists the direction, the scope and the map's
/// changes; Back returns to the page; the answers carry it all. A cloud-to-AD setup never
/// sees the page (the 13 steps of every other test).
#[test]
fn ad_as_a_source_adds_the_scope_and_map_page_and_review_lists_them() {
    let mut results = egui_kittest::SnapshotResults::new();
    let mut h = walk_fixed_with(
        1.0,
        egui::Theme::Light,
        false,
        Fixed::default(),
        "10-policies",
    );
    assert!(heading(&h).starts_with("Step 10 of 13"), "{}", heading(&h));
    click(&mut h, "From AD to the cloud");
    h.run_steps(3);
    assert!(
        has(
            &h,
            "AD is the source: the users and groups in the scope you choose next, with their members, are sent to the cloud"
        ),
        "the choice says what the agent does:\n{}",
        screen(&h)
    );
    assert!(heading(&h).starts_with("Step 10 of 14"), "{}", heading(&h));
    next(&mut h);
    assert_eq!(heading(&h), "Step 11 of 14: AD as a source");
    set(
        &mut h,
        "Containers (one DN per line)",
        "OU=Staff;DC=example;DC=com",
    );
    set(
        &mut h,
        "Only users matching this LDAP filter (optional)",
        "(department=*)",
    );
    set(&mut h, "Job title", "extensionAttribute1");
    click(&mut h, "Send Mobile phone");
    wait_for(&mut h, "the page to settle", settled);
    // The picture from the page's top, as it opens.
    h.get_by_label("Containers (one DN per line)")
        .scroll_to_me();
    h.run_steps(5);
    assert_nothing_cut(&h, "10b-source");
    assert_plain(&h, "10b-source");
    h.snapshot("wizard/10b-source");
    if scroll_to_end(&mut h) {
        assert_nothing_cut(&h, "10b-source (lower half)");
        h.snapshot("wizard/10b-source-lower");
    }
    results.extend_harness(&mut h);
    unfold_passed(&mut h);
    assert!(has(&h, "the scope selects 1,240 users"), "{}", screen(&h));
    // The scope picked from the directory: a click adds a container to the typed list, a
    // click on a listed one (highlighted, in whatever spelling it was typed) takes it out.
    let value = |h: &H, label: &str| h.get_by_label(label).value().unwrap_or_default();
    let containers = "Containers (one DN per line)";
    let selected = |h: &H, name: &str| {
        // egui gives a chosen node (a selectable button) AccessKit's toggled state.
        h.query_all_by_label(name)
            .any(|n| n.accesskit_node().toggled() == Some(egui::accesskit::Toggled::True))
    };
    wait_for(&mut h, "the containers' tree", |h| {
        h.query_by_label("Computers").is_some()
    });
    assert!(selected(&h, "Staff"), "the typed container is highlighted");
    assert!(!selected(&h, "Computers"));
    // The page was left scrolled to its end; a node's scroll_to_me only moves the tree's own
    // area, so the page is brought back to the tree first (as a mouse wheel would).
    h.get_by_label("Filter containers to send by name")
        .scroll_to_me();
    h.run_steps(4);
    click(&mut h, "Computers");
    h.run_steps(3);
    assert_eq!(
        value(&h, containers),
        "OU=Staff;DC=example;DC=com\nCN=Computers,DC=example,DC=com"
    );
    assert!(selected(&h, "Computers"));
    click(&mut h, "Staff");
    h.run_steps(3);
    assert_eq!(value(&h, containers), "CN=Computers,DC=example,DC=com");
    assert!(!selected(&h, "Staff"));
    // The groups' tree, folded while no group is listed: a security group is added, a
    // distribution group cannot be and says why.
    click(&mut h, "Pick security groups from the directory");
    h.run_steps(3);
    wait_for(&mut h, "the groups' tree", |h| {
        h.query_all_by_label("Expand Staff").count() == 2
    });
    // The second Staff is the groups' tree's (drawn below the containers').
    h.query_all_by_label("Expand Staff")
        .last()
        .unwrap_or_else(|| panic!("no Staff in the groups' tree"))
        .click_accesskit();
    wait_for(&mut h, "the groups under Staff", |h| has(h, "Cloud Groups"));
    assert!(
        has(&h, "a distribution group: the scope takes security groups"),
        "{}",
        screen(&h)
    );
    assert!(
        h.get_by_label("Mailing List")
            .accesskit_node()
            .is_disabled()
    );
    click(&mut h, "Cloud Groups");
    h.run_steps(3);
    let groups = "Only members of these security groups (optional, nested membership counts)";
    assert_eq!(
        value(&h, groups),
        "CN=Cloud Groups,OU=Staff,DC=example,DC=com"
    );
    // The arrow keys move through the tree without choosing (several can be chosen).
    h.get_by_label("Cloud Groups").focus();
    h.run_steps(2);
    h.key_press(egui::Key::ArrowUp);
    h.run_steps(4);
    assert_eq!(
        value(&h, groups),
        "CN=Cloud Groups,OU=Staff,DC=example,DC=com"
    );
    set(&mut h, groups, "");
    set(&mut h, containers, "OU=Staff;DC=example;DC=com");
    // A filter without parentheses is named on the page, and Next waits.
    set(
        &mut h,
        "Only users matching this LDAP filter (optional)",
        "department=Sales",
    );
    h.run_steps(3);
    assert!(has(&h, "is not an LDAP filter"), "{}", screen(&h));
    assert!(!next_enabled(&h));
    set(
        &mut h,
        "Only users matching this LDAP filter (optional)",
        "(department=*)",
    );
    next(&mut h);
    assert_eq!(heading(&h), "Step 12 of 14: Review");
    for text in [
        "AD is the source: the users and groups in the scope you choose next, with their members, are sent to the cloud",
        "users in OU=Staff;DC=example;DC=com, matching (department=*)",
        "the default map, except: Mobile phone not sent; Job title from extensionAttribute1",
    ] {
        wait_text(&mut h, text);
    }
    click(&mut h, "< Back");
    h.run_steps(3);
    assert_eq!(heading(&h), "Step 11 of 14: AD as a source");
    // With AD as the only source nothing is written to AD: the sync group may stay empty.
    for _ in 0..2 {
        click(&mut h, "< Back");
        h.run_steps(3);
    }
    assert_eq!(heading(&h), "Step 9 of 14: Sync group");
    set(&mut h, "Sync group", "");
    h.run_steps(3);
    assert!(
        has(&h, "Not needed: with users travelling only from AD"),
        "{}",
        screen(&h)
    );
    assert!(next_enabled(&h));
    results.unwrap();
}

#[test]
fn nothing_typed_into_any_field_panics() {
    let nasty = [
        "",
        " ",
        "\u{0}",
        "ou=",
        "=;=;=",
        "CN=a\\",
        "\\\\\\\\,,,;;;",
        "ldap://[::1]:99999/",
        "https://",
        "https://user:pass@[::1",
        "ADS1-",
        "ADS1-ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ",
        "💥🦀 Zürich \u{202e}evil",
        "C:\\Windows\\System32",
        "../../../../etc/shadow",
        "99999999999999999999",
        "-1",
    ];
    let long = "x".repeat(10_000);
    let mut h = Harness::builder()
        .with_size(egui::vec2(800.0, 600.0))
        .with_max_steps(20)
        .allow_missing_glyphs()
        .build_eframe(move |cc| {
            let options = Options {
                config_path: PathBuf::from("/nonexistent/ad-sync/agent.toml"),
                backend: Arc::new(Fixed::default()),
                elevated: true,
                debounce: Duration::from_millis(1),
                bench: None,
                prefix: None,
                agent_dir: None,
                dns_server: Ok(None),
                host_domain: Some("example.com".into()),
                ui_dump: None,
                bench_page: None,
            };
            WizardApp::new(&cc.egui_ctx, options).unwrap_or_else(|e| panic!("{e}"))
        });
    h.step();
    let fields = [
        "Destination folder",
        "Domain controller (FQDN)",
        "Domain to search",
        "Port (empty for the default)",
        "Trust this CA file (optional)",
        "Root User container",
        "Service account",
        "Password",
        "Cloud URL",
        "Cloud CA file (optional)",
        "Connect key",
        "Sync group",
        "Export to",
    ];
    // Walk every page; on each, pour every input into every field it has.
    for _ in 0..10 {
        for label in fields {
            if h.query_by_label(label).is_none() {
                continue;
            }
            for value in nasty.iter().copied().chain([long.as_str()]) {
                set(&mut h, label, value);
                h.step();
            }
        }
        // Leave the page with good values so the next one can be reached.
        let title = heading(&h);
        let page = title.split(": ").nth(1).unwrap_or_default().to_string();
        match page.as_str() {
            "Destination folder" => set(&mut h, "Destination folder", "/opt/ad-sync"),
            "Domain controller" => set(&mut h, "Domain controller (FQDN)", "dc1.example.com"),
            "Connection security" => set(&mut h, "Port (empty for the default)", ""),
            "Root User container" => {
                set(&mut h, "Root User container", "OU=Staff;DC=example;DC=com")
            }
            "Service account" => {
                set(&mut h, "Service account", "svc-sync");
                set(&mut h, "Password", "x");
            }
            "Connect key" => {
                set(&mut h, "Cloud URL", "https://cloud.example.com");
                set(
                    &mut h,
                    "Connect key",
                    "ADS1-1X07-XTM7-9ZBT-WJ6C-A644-2CXQ-MY1K-0W9C",
                );
            }
            "Sync group" => set(&mut h, "Sync group", "CN=G;DC=example;DC=com"),
            "Review" => break,
            _ => {}
        }
        wait_for(&mut h, "the page to settle", settled);
        next(&mut h);
    }
    assert!(heading(&h).ends_with("Review"), "{}", heading(&h));
}

/// The fixed answers, except that the directory never answers a picker's read.
struct SilentDirectory;

impl ad_sync::wizard::backend::Backend for SilentDirectory {
    fn preflight(
        &self,
        answers: ad_sync::answers::Answers,
        scope: ad_sync::preflight::Scope,
    ) -> ad_sync::wizard::backend::BoxFuture<ad_sync::preflight::Report> {
        Fixed::default().preflight(answers, scope)
    }

    fn certificate(
        &self,
        host: String,
        port: u16,
        starttls: bool,
        timeout: Duration,
    ) -> ad_sync::wizard::backend::BoxFuture<Result<ad_sync::directory::cert::CertInfo, String>>
    {
        Fixed::default().certificate(host, port, starttls, timeout)
    }

    fn discover(
        &self,
        domain: String,
        server: Option<std::net::IpAddr>,
        timeout: Duration,
    ) -> ad_sync::wizard::backend::BoxFuture<Result<ad_sync::directory::discover::Discovered, String>>
    {
        Fixed::default().discover(domain, server, timeout)
    }

    fn level(
        &self,
        _answers: ad_sync::answers::Answers,
        _base: Option<String>,
        _offer: ad_sync::directory::browse::Offer,
        _name: String,
        _limit: usize,
    ) -> ad_sync::wizard::backend::BoxFuture<Result<ad_sync::directory::browse::Level, String>>
    {
        Box::pin(std::future::pending())
    }

    fn folder(
        &self,
        dir: PathBuf,
    ) -> ad_sync::wizard::backend::BoxFuture<ad_sync::preflight::CheckResult> {
        Fixed::default().folder(dir)
    }

    fn stored_password(
        &self,
        config: PathBuf,
    ) -> ad_sync::wizard::backend::BoxFuture<Result<ad_sync::secret::Secret, String>> {
        Fixed::default().stored_password(config)
    }
}

/// A level that never comes: the page keeps drawing, the field stays usable, the read can be
/// cancelled and retried, and typing the DN still passes the page.
#[test]
fn a_tree_level_that_never_comes_can_be_cancelled_and_the_dn_typed() {
    let mut h = fixed_wizard_with(1.0, Arc::new(SilentDirectory));
    h.step();
    loop {
        let title = heading(&h);
        if title.ends_with("Root User container") {
            break;
        }
        match title.split(": ").nth(1).unwrap_or_default() {
            "Destination folder" => set(&mut h, "Destination folder", "/opt/ad-sync"),
            "Service account" => {
                set(&mut h, "Service account", "svc-sync");
                set(&mut h, "Password", "x");
            }
            _ => {}
        }
        wait_for(&mut h, "the page to settle", settled);
        next(&mut h);
    }
    wait_text(&mut h, "Reading…");
    // Frames go on being drawn while the read waits.
    let before = h.ctx.cumulative_frame_nr();
    h.run_steps(5);
    assert!(h.ctx.cumulative_frame_nr() >= before + 5);
    assert!(has(&h, "Reading…"), "{}", screen(&h));
    click(&mut h, "Cancel reading");
    h.run_steps(2);
    assert!(has(&h, "Reading was cancelled."), "{}", screen(&h));
    assert!(h.query_by_label("Retry").is_some(), "{}", screen(&h));
    // The field is the primary way and never waits for the tree.
    set(&mut h, "Root User container", "OU=Staff;DC=example;DC=com");
    wait_page_passes(&mut h, "Root User container");
    click(&mut h, "Retry");
    h.run_steps(2);
    assert!(has(&h, "Reading…"), "{}", screen(&h));
}
