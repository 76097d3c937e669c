//! A wizard in a real X window, driven from outside as an administrator drives it: an Xvfb of
//! the test's own, the wizard's AccessKit tree read from the file it writes when
//! `AD_SYNC_SETUP_UI_DUMP` is set (the names kittest and screen readers use, with each node's
//! rectangle in window pixels), and real X11 input through xdotool (pointer, clicks, typing).
//! Used for the Linux release build (`tests/window.rs`) and for the Windows build under Wine
//! (`tests/windows.rs`), whose windows Wine's X11 driver maps to X windows like any other.
//!
//! Every page recorded is kept as a screenshot, and recording fails when any text on the page
//! reaches past the window's edge. Secrets reach xdotool on its standard input, never its
//! command line. Both processes are stopped by PID when dropped.
#![allow(dead_code)]

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the wizard showed in its last frame.
pub struct Screen {
    pub width: f64,
    pub nodes: Vec<Value>,
}

impl Screen {
    pub fn names(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .filter_map(|n| n["name"].as_str())
            .collect()
    }

    pub fn has(&self, text: &str) -> bool {
        self.names().iter().any(|n| n.contains(text))
    }

    /// The node whose name is exactly `name` (the first, top to bottom).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.nodes.iter().find(|n| n["name"].as_str() == Some(name))
    }

    /// The text field named `name` (not its label above it, which has the same name).
    pub fn input(&self, name: &str) -> Option<&Value> {
        self.nodes.iter().find(|n| {
            n["name"].as_str() == Some(name)
                && n["role"].as_str().is_some_and(|r| r.ends_with("Input"))
        })
    }

    pub fn enabled(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|n| n["disabled"].as_bool() == Some(false))
    }

    pub fn value(&self, name: &str) -> Option<String> {
        self.nodes
            .iter()
            .find(|n| {
                n["name"].as_str() == Some(name)
                    && n["role"].as_str().is_some_and(|r| r.contains("TextInput"))
            })
            .and_then(|n| n["value"].as_str().map(str::to_string))
    }

    pub fn heading(&self) -> String {
        self.names()
            .into_iter()
            .find(|n| n.starts_with("Step "))
            .unwrap_or_default()
            .to_string()
    }

    /// Every text that reaches past the window's left or right edge.
    pub fn cut(&self) -> Vec<String> {
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

pub fn tool(program: &str) -> Command {
    let mut c = Command::new(program);
    c.stdin(Stdio::null());
    c
}

/// An X server of the test's own on a display number nobody uses (stopped by PID when dropped).
pub struct Xvfb {
    child: Child,
    pub display: String,
}

impl Xvfb {
    pub fn start() -> Xvfb {
        let n = (40..99)
            .find(|&n| display_free(n))
            .unwrap_or_else(|| panic!("no free X display number between :40 and :98"));
        let display = format!(":{n}");
        let child = tool("Xvfb")
            .args([&display, "-screen", "0", "1024x768x24", "-nolisten", "tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("Xvfb (apt-get install -y xvfb; dev/setup-machine does): {e}")
            });
        super::stop_at_exit([child.id()]);
        let socket = PathBuf::from(format!("/tmp/.X11-unix/X{n}"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "Xvfb did not start on {display}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Xvfb { child, display }
    }

    /// A screenshot of the whole screen.
    pub fn shot_to(&self, path: &Path) -> std::process::Output {
        tool("import")
            .args(["-display", &self.display, "-window", "root"])
            .arg(path)
            .output()
            .unwrap_or_else(|e| panic!("import (imagemagick): {e}"))
    }
}

/// Whether display `n` can be taken: neither its lock nor its socket exists, or both are a
/// dead X server's (its lock names a process that is gone: an X server killed with SIGKILL
/// leaves them), which are then removed. A display a live server holds, or a socket without a
/// lock, is never touched.
fn display_free(n: u32) -> bool {
    let lock = PathBuf::from(format!("/tmp/.X{n}-lock"));
    let socket = PathBuf::from(format!("/tmp/.X11-unix/X{n}"));
    match std::fs::read_to_string(&lock) {
        Err(_) => !lock.exists() && !socket.exists(),
        Ok(text) => match text.trim().parse::<u32>() {
            Ok(pid) if pid > 0 && !Path::new(&format!("/proc/{pid}")).exists() => {
                let _ = std::fs::remove_file(&socket);
                std::fs::remove_file(&lock).is_ok()
            }
            _ => false,
        },
    }
}

impl Drop for Xvfb {
    /// SIGTERM first, so that the server removes its lock and socket (a SIGKILL leaves them,
    /// and each run would take one display number for good); SIGKILL after 5 s.
    fn drop(&mut self) {
        // SAFETY: kill(2) on the X server this test started, by its PID.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The wizard's window and what the test knows of it; the wizard is stopped by PID when dropped.
pub struct Window {
    pub wizard: Child,
    display: String,
    window_id: String,
    pub dump: PathBuf,
    pub shots: PathBuf,
    pub log: PathBuf,
    pub page: u32,
    /// How long to wait for one thing to show (Wine draws more slowly than a native build).
    patience: Duration,
}

impl Drop for Window {
    fn drop(&mut self) {
        let _ = self.wizard.kill();
        let _ = self.wizard.wait();
    }
}

impl Window {
    /// Takes over `wizard`, started on `display` with `AD_SYNC_SETUP_UI_DUMP` naming `dump` and
    /// its output going to `log`: waits for its window and its first frame, and focuses it.
    /// Screenshots go to `shots` (emptied first).
    pub fn attach(
        wizard: Child,
        display: &str,
        dump: PathBuf,
        log: PathBuf,
        shots: PathBuf,
        patience: Duration,
    ) -> Window {
        super::stop_at_exit([wizard.id()]);
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).unwrap_or_else(|e| panic!("{e}"));
        let mut w = Window {
            wizard,
            display: display.to_string(),
            window_id: String::new(),
            dump,
            shots,
            log,
            page: 0,
            patience,
        };
        let deadline = Instant::now() + patience * 3;
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
                "the wizard's window did not open:\n{}",
                std::fs::read_to_string(&w.log).unwrap_or_default()
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

    pub fn screen(&self) -> Screen {
        let text = std::fs::read_to_string(&self.dump).unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        Screen {
            width: v["width"].as_f64().unwrap_or(0.0),
            nodes: v["nodes"].as_array().cloned().unwrap_or_default(),
        }
    }

    /// Waits until `cond` holds for what the window shows.
    pub fn wait(&self, what: &str, cond: impl Fn(&Screen) -> bool) -> Screen {
        let deadline = Instant::now() + self.patience;
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
    pub fn click(&self, name: &str) {
        let s = self.wait(&format!("`{name}` on screen"), |s| s.get(name).is_some());
        let n = s.get(name).cloned().unwrap_or_default();
        self.click_at(&n);
    }

    pub fn click_at(&self, n: &Value) {
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
    pub fn type_into(&self, name: &str, text: &str) {
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

    pub fn key(&self, key: &str) {
        self.run(&["key", key]);
    }

    pub fn shot_to(&self, path: &Path) {
        let _ = tool("import")
            .env("DISPLAY", &self.display)
            .args(["-window", &self.window_id])
            .arg(path)
            .status();
    }

    /// No check of the page running: then a screenshot is kept as `shots/NN-name.png`, and
    /// nothing may reach past the window's edge. Returns the screen and the screenshot.
    pub fn settle_and_record(&mut self, name: &str) -> (Screen, PathBuf) {
        std::thread::sleep(Duration::from_millis(300));
        self.wait("the page to settle", |s| {
            !s.has("Cancel check") && !s.has("Waiting to check") && !s.has("Reading…")
        });
        // What is on screen has stopped changing (the dump is rewritten only on a change).
        let mut last = std::fs::read_to_string(&self.dump).unwrap_or_default();
        let deadline = Instant::now() + self.patience;
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let now = std::fs::read_to_string(&self.dump).unwrap_or_default();
            if now == last || Instant::now() > deadline {
                break;
            }
            last = now;
        }
        let s = self.screen();
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
        (s, shot)
    }

    /// Waits for Next to be enabled with no failure shown, records the page, presses Next.
    /// Returns what the page showed when it was recorded, and its screenshot.
    ///
    /// A check that failed is run again once, as an administrator would press "Check again"
    /// (a check's time limit can run out on a machine busy with other tests); what it said is
    /// printed, and a second failure fails the test with the page's text.
    pub fn next(&mut self, name: &str) -> (Screen, PathBuf) {
        let s = self.wait(&format!("the checks of {name} to pass"), |s| {
            (s.enabled("Next >") && !s.has("Failed:")) || s.has("Failed:")
        });
        if s.has("Failed:") && s.get("Check again").is_some() {
            println!(
                "{name}: a check failed; checking again. The page said:\n{}",
                s.names().join("\n")
            );
            self.click("Check again");
            std::thread::sleep(Duration::from_millis(500));
        }
        self.wait(&format!("the checks of {name} to pass"), |s| {
            s.enabled("Next >") && !s.has("Failed:")
        });
        let (s, shot) = self.settle_and_record(name);
        let before = s.heading();
        self.click("Next >");
        self.wait("the next page", |s| s.heading() != before);
        (s, shot)
    }

    /// Waits for the wizard to exit by itself, and returns whether it exited successfully.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = self.wizard.try_wait() {
                return st;
            }
            assert!(Instant::now() < deadline, "the wizard did not close");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
