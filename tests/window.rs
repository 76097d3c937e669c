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

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::testbed::{self, accounts};

/// What the wizard showed in its last frame.
struct Screen {
    width: f64,
    nodes: Vec<Value>,
}

impl Screen {
    fn names(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .filter_map(|n| n["name"].as_str())
            .collect()
    }

    fn has(&self, text: &str) -> bool {
        self.names().iter().any(|n| n.contains(text))
    }

    /// The node whose name is exactly `name` (the first, top to bottom).
    fn get(&self, name: &str) -> Option<&Value> {
        self.nodes.iter().find(|n| n["name"].as_str() == Some(name))
    }

    /// The text field named `name` (not its label above it, which has the same name).
    fn input(&self, name: &str) -> Option<&Value> {
        self.nodes.iter().find(|n| {
            n["name"].as_str() == Some(name)
                && n["role"].as_str().is_some_and(|r| r.ends_with("Input"))
        })
    }

    fn enabled(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|n| n["disabled"].as_bool() == Some(false))
    }

    fn value(&self, name: &str) -> Option<String> {
        self.nodes
            .iter()
            .find(|n| {
                n["name"].as_str() == Some(name)
                    && n["role"].as_str().is_some_and(|r| r.contains("TextInput"))
            })
            .and_then(|n| n["value"].as_str().map(str::to_string))
    }

    fn heading(&self) -> String {
        self.names()
            .into_iter()
            .find(|n| n.starts_with("Step "))
            .unwrap_or_default()
            .to_string()
    }

    /// Every text that reaches past the window's left or right edge.
    fn cut(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| {
                let x0 = n["x0"].as_f64().unwrap_or(0.0);
                let x1 = n["x1"].as_f64().unwrap_or(0.0);
                x0 < -0.5 || x1 > self.width + 0.5
            })
            .map(|n| {
                format!(
                    "{:?} spans x {:.0}..{:.0} of {:.0}",
                    n["name"].as_str().unwrap_or_default(),
                    n["x0"].as_f64().unwrap_or(0.0),
                    n["x1"].as_f64().unwrap_or(0.0),
                    self.width
                )
            })
            .collect()
    }
}

/// Xvfb, the wizard and what the test knows of them; both stopped by PID when dropped.
struct Window {
    xvfb: Child,
    wizard: Child,
    display: String,
    window_id: String,
    dump: PathBuf,
    shots: PathBuf,
    log: PathBuf,
    page: u32,
}

impl Drop for Window {
    fn drop(&mut self) {
        for c in [&mut self.wizard, &mut self.xvfb] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn tool(program: &str) -> Command {
    let mut c = Command::new(program);
    c.stdin(Stdio::null());
    c
}

fn free_display() -> u32 {
    (40..99)
        .find(|n| {
            !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
                && !Path::new(&format!("/tmp/.X{n}-lock")).exists()
        })
        .unwrap_or_else(|| panic!("no free X display number between :40 and :98"))
}

impl Window {
    fn open(setup: &Path, dir: &Path) -> Window {
        let n = free_display();
        let display = format!(":{n}");
        let xvfb = tool("Xvfb")
            .args([&display, "-screen", "0", "1024x768x24", "-nolisten", "tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("Xvfb (apt-get install -y xvfb; dev/setup-machine does): {e}")
            });
        let socket = PathBuf::from(format!("/tmp/.X11-unix/X{n}"));
        let deadline = Instant::now() + Duration::from_secs(15);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "Xvfb did not start on {display}");
            std::thread::sleep(Duration::from_millis(50));
        }
        let dump = dir.join("ui.json");
        let log = dir.join("wizard.log");
        let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots/window");
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).unwrap_or_else(|e| panic!("{e}"));
        let out = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}"));
        let err = out.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let wizard = tool(setup.to_str().unwrap_or_default())
            .arg("--config")
            .arg(dir.join("etc/agent.toml"))
            .arg("--prefix")
            .arg(dir.join("root"))
            .env("DISPLAY", &display)
            .env_remove("WAYLAND_DISPLAY")
            .env("AD_SYNC_SETUP_UI_DUMP", &dump)
            // The test domain's DNS (Samba's internal DNS on dc1's address), not the machine's.
            .env("AD_SYNC_DNS_SERVER", testbed::DNS_SERVER)
            .env("AD_SYNC_LOG", "debug")
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", setup.display()));
        let mut w = Window {
            xvfb,
            wizard,
            display,
            window_id: String::new(),
            dump,
            shots,
            log,
            page: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = w
                .xdotool()
                .args(["search", "--name", "^ad-sync setup [0-9]"])
                .output()
                .unwrap_or_else(|e| panic!("xdotool (apt-get install -y xdotool): {e}"));
            let found = String::from_utf8_lossy(&out.stdout);
            if let Some(id) = found.lines().next() {
                w.window_id = id.trim().to_string();
                break;
            }
            if let Ok(Some(status)) = w.wizard.try_wait() {
                panic!(
                    "the wizard exited ({status}) before its window opened:\n{}",
                    std::fs::read_to_string(&w.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the wizard's window did not open"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // The first frame is drawn (the window is mapped) once the wizard wrote what it shows.
        w.wait("the first frame", |s| !s.nodes.is_empty());
        let id = w.window_id.clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !w
            .xdotool()
            .args(["windowfocus", "--sync", &id])
            // Until the window is mapped X says BadMatch; that is what the loop waits out.
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(
                Instant::now() < deadline,
                "the wizard's window cannot be focused"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        w
    }

    fn xdotool(&self) -> Command {
        let mut c = tool("xdotool");
        c.env("DISPLAY", &self.display);
        c
    }

    fn run(&self, args: &[&str]) {
        let status = self
            .xdotool()
            .args(args)
            .status()
            .unwrap_or_else(|e| panic!("xdotool {args:?}: {e}"));
        assert!(status.success(), "xdotool {args:?}: {status}");
    }

    fn screen(&self) -> Screen {
        let text = std::fs::read_to_string(&self.dump).unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        Screen {
            width: v["width"].as_f64().unwrap_or(0.0),
            nodes: v["nodes"].as_array().cloned().unwrap_or_default(),
        }
    }

    /// Waits until `cond` holds for what the window shows.
    fn wait(&self, what: &str, cond: impl Fn(&Screen) -> bool) -> Screen {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.screen();
            if cond(&s) {
                return s;
            }
            if Instant::now() > deadline {
                let shot = self.shots.join("failed.png");
                self.shot_to(&shot);
                panic!(
                    "gave up waiting for {what} (screenshot {}); the window shows:\n{}",
                    shot.display(),
                    s.names().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Moves the pointer onto the node named `name` and clicks it.
    fn click(&self, name: &str) {
        let s = self.wait(&format!("`{name}` on screen"), |s| s.get(name).is_some());
        let n = s.get(name).cloned().unwrap_or_default();
        self.click_at(&n);
    }

    fn click_at(&self, n: &Value) {
        let x = (n["x0"].as_f64().unwrap_or(0.0) + n["x1"].as_f64().unwrap_or(0.0)) / 2.0;
        let y = (n["y0"].as_f64().unwrap_or(0.0) + n["y1"].as_f64().unwrap_or(0.0)) / 2.0;
        let (x, y) = (format!("{}", x.round()), format!("{}", y.round()));
        let id = self.window_id.clone();
        self.run(&[
            "mousemove",
            "--window",
            &id,
            &x,
            &y,
            "sleep",
            "0.15",
            "click",
            "1",
            "sleep",
            "0.15",
        ]);
    }

    /// Clicks the field named `name`, selects what it holds, and types `text` over it. The text
    /// goes to xdotool on its standard input (never on its command line, where a password
    /// would be visible to every user of the machine).
    fn type_into(&self, name: &str, text: &str) {
        let s = self.wait(&format!("the field `{name}`"), |s| s.input(name).is_some());
        self.click_at(&s.input(name).cloned().unwrap_or_default());
        self.run(&["key", "--clearmodifiers", "ctrl+a"]);
        let mut child = self
            .xdotool()
            .args(["type", "--delay", "4", "--file", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("xdotool type: {e}"));
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(text.as_bytes())
                .unwrap_or_else(|e| panic!("xdotool type: {e}"));
        }
        let status = child.wait().unwrap_or_else(|e| panic!("xdotool type: {e}"));
        assert!(status.success(), "xdotool type: {status}");
    }

    fn key(&self, key: &str) {
        self.run(&["key", key]);
    }

    fn shot_to(&self, path: &Path) {
        let _ = tool("import")
            .env("DISPLAY", &self.display)
            .args(["-window", &self.window_id])
            .arg(path)
            .status();
    }

    /// No check of the page running: then a screenshot is kept and nothing may reach past the
    /// window's edge.
    fn settle_and_record(&mut self, name: &str) -> Screen {
        std::thread::sleep(Duration::from_millis(300));
        let s = self.wait("the page to settle", |s| {
            !s.has("Cancel check") && !s.has("Waiting to check") && !s.has("Reading…")
        });
        self.page += 1;
        let shot = self.shots.join(format!("{:02}-{name}.png", self.page));
        self.shot_to(&shot);
        let cut = s.cut();
        assert!(
            cut.is_empty(),
            "{}: text runs off the window (screenshot {}):\n{}",
            s.heading(),
            shot.display(),
            cut.join("\n")
        );
        s
    }

    /// Waits for Next to be enabled with no failure shown, records the page, presses Next.
    fn next(&mut self, name: &str) {
        self.wait(&format!("the checks of {name} to pass"), |s| {
            s.enabled("Next >") && !s.has("Failed:")
        });
        self.settle_and_record(name);
        let before = self.screen().heading();
        self.click("Next >");
        self.wait("the next page", |s| s.heading() != before);
    }
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

    let mut w = Window::open(&setup, &dir);
    support::stop_at_exit([w.wizard.id(), w.xvfb.id()]);

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
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Ok(Some(st)) = w.wizard.try_wait() {
            break st;
        }
        assert!(Instant::now() < deadline, "the wizard did not close");
        std::thread::sleep(Duration::from_millis(100));
    };
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
