//! What the wizard holds between frames, each part where it belongs:
//!
//! - `form`: what was typed (pure; `form.rs`);
//! - `page`: where the administrator is (changed only by the window, from what pages return);
//! - `setup`: how this run started and what was installed already;
//! - `validator` and `acks`: the check runs and the warnings acknowledged;
//! - `files`: the file dialogs and the export, each on its own thread;
//! - `install`: the install run, its preview and why it could not start.
//!
//! Toggles that only change how a page looks (show the key) live in egui's memory with the
//! page, not here.

use crate::form::Form;
use crate::nav::Page;
use crate::validate::{Outcome, Slot, Validator};
use ad_sync_core::answers::Answers;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::mpsc;

/// What is installed already.
pub enum Existing {
    None,
    Installed(Box<Answers>),
    /// A config exists but cannot be used; the text says why and what to do.
    Unreadable(String),
}

/// Where the service account's password on the form came from (review mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    Typed,
    Reading,
    Store(String),
    StoreFailed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickTarget {
    Folder,
    LdapCa,
    CloudCa,
    Export,
}

/// Everything the pages read and change.
pub struct State {
    pub form: Form,
    pub page: Page,
    pub setup: Setup,
    pub validator: Validator,
    /// Warnings the administrator acknowledged (id + summary).
    pub acks: HashSet<String>,
    /// The domain whose DCs were asked for (the Find button), if any.
    pub discover_for: Option<String>,
    pub files: Files,
    pub install: Install,
    /// The directory pickers of the Root User container and the sync group.
    pub trees: Trees,
}

/// The two directory pickers, and whether the default container was proposed already.
pub struct Trees {
    pub root: crate::tree::Tree,
    pub group: crate::tree::Tree,
    /// AD as a source: the scope's containers, and the groups whose members it sends.
    pub source_containers: crate::tree::Tree,
    pub source_groups: crate::tree::Tree,
    /// `CN=Users` of the bound domain was put in the empty field once (never again, so a
    /// field the administrator emptied stays empty).
    pub root_proposed: bool,
}

impl Default for Trees {
    fn default() -> Trees {
        use ad_sync_core::directory::browse::Offer;
        Trees {
            root: crate::tree::Tree::new(Offer::Containers),
            group: crate::tree::Tree::new(Offer::Groups),
            source_containers: crate::tree::Tree::multi(Offer::Containers),
            source_groups: crate::tree::Tree::multi(Offer::ScopeGroups),
            root_proposed: false,
        }
    }
}

/// How this run of the wizard started, and what was installed already.
pub struct Setup {
    pub existing: Existing,
    pub config_path: PathBuf,
    pub elevated: bool,
    /// Whether the installed agent finished its enrollment (an upgrade needs no key then).
    pub enrolled: bool,
    pub password_source: PasswordSource,
    /// What the install step is given (paths, prefix, whether to start the service).
    pub install_options: ad_sync_core::install::Options,
    /// The DNS server discovery asks (`None`: this host's resolver); `Err` says why the one
    /// named in `AD_SYNC_DNS_SERVER` cannot be used.
    pub dns_server: Result<Option<std::net::IpAddr>, String>,
    /// Discovery ran by itself once, when the Domain controller page first opened.
    pub discovered_on_open: bool,
    /// The first DC discovery found was put in the empty field (once).
    pub dc_proposed: bool,
    /// Whether setup can start the service here (Review's "Start syncing when setup
    /// finishes"), or why not.
    pub can_start: Result<(), String>,
    /// The proxy found on this machine when the wizard started (proposed for a new install),
    /// or why what was found names no proxy.
    pub proxy_found: Result<Option<ad_sync_core::cloud::system_proxy::Found>, String>,
}

/// The file dialogs and the export: each runs on its own thread and reports here.
#[derive(Default)]
pub struct Files {
    pub export_path: String,
    pub export_result: Option<Result<String, String>>,
    export_rx: Option<mpsc::Receiver<Result<String, String>>>,
    picker_rx: Option<mpsc::Receiver<(PickTarget, Option<PathBuf>)>>,
    /// Why the last dialog gave nothing, shown under the field it was for.
    picker_note: Option<(PickTarget, String)>,
}

/// The install: what it will do (the Review page's preview), its run, and why it could not
/// start.
#[derive(Default)]
pub struct Install {
    /// The Install page's run, once started.
    pub run: Option<crate::installer::InstallRun>,
    pub error: Option<String>,
    /// What Install will do, shown on the Review page (computed once per visit).
    pub preview: Option<ad_sync_core::install::Plan>,
    /// The Finish page's import of AD into the cloud, once asked for.
    pub import: Option<crate::import::ImportRun>,
    /// Review mode's removal of the product: asked (the confirmation is open), what to keep,
    /// and its run once confirmed.
    pub remove_asked: bool,
    pub keep_config: bool,
    pub uninstall: Option<crate::uninstaller::UninstallRun>,
    pub uninstall_error: Option<String>,
    /// Review mode's request for a full reconciliation of AD (`ad-sync-agent resync`), while
    /// it runs, and its answer.
    pub resync: Option<std::sync::mpsc::Receiver<Result<String, String>>>,
    pub resync_answer: Option<Result<String, String>>,
    /// The Finish page following the service's first sync.
    pub follow: Follow,
}

/// The Finish page's watch on the first sync: the status read every two seconds until a run
/// that started after the install has finished.
#[derive(Default)]
pub struct Follow {
    pub polls: u32,
    pub asked: Option<std::time::Instant>,
    /// The newest status read, and why the last read failed.
    pub latest: Option<ad_sync_core::status::AgentStatus>,
    pub error: Option<String>,
    pub done: bool,
}

impl State {
    /// Reviewing an enrolled install: no connect key is asked for.
    /// The installed agent's status, once `ad-sync-agent status` answered (review mode).
    pub fn agent_status(&self) -> Option<&ad_sync_core::status::AgentStatus> {
        match self.validator.view(crate::validate::Slot::Status) {
            crate::validate::View::Done(crate::validate::Outcome::Status(r)) => {
                r.as_ref().as_ref().ok()
            }
            _ => None,
        }
    }

    /// The job that reads the installed agent's status (review mode only).
    pub fn status_job(&self) -> Option<crate::validate::Job> {
        if !matches!(self.setup.existing, Existing::Installed(_)) {
            return None;
        }
        let opts = &self.setup.install_options;
        let layout = ad_sync_core::install::layout::Layout::new(
            &self.setup.config_path,
            std::path::Path::new(self.form.install_dir.trim()),
            opts.prefix.as_deref(),
        );
        Some(crate::validate::Job::Status {
            program: layout.real(&layout.agent_exe),
            config: layout.real(&self.setup.config_path),
            state_dir: layout.real(&layout.state_dir),
            offline: false,
            poll: 0,
        })
    }

    /// Asks the installed agent for a full reconciliation of AD at its next export, on a
    /// thread (the UI keeps drawing): `ad-sync-agent resync` with the install's config and
    /// state folder. Its answer lands in `install.resync_answer`.
    pub fn request_resync(&mut self, ctx: &egui::Context) {
        let Some(crate::validate::Job::Status {
            program,
            config,
            state_dir,
            ..
        }) = self.status_job()
        else {
            return;
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let ctx = ctx.clone();
        std::thread::spawn(move || {
            let answer = std::process::Command::new(&program)
                .arg("resync")
                .arg("--config")
                .arg(&config)
                .arg("--state-dir")
                .arg(&state_dir)
                .output()
                .map_err(|e| format!("{} could not be run: {e}", program.display()))
                .and_then(|o| {
                    let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
                    let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
                    if o.status.success() {
                        Ok(out)
                    } else {
                        Err(if err.is_empty() { out } else { err })
                    }
                });
            let _ = tx.send(answer);
            ctx.request_repaint();
        });
        self.install.resync = Some(rx);
        self.install.resync_answer = None;
    }

    pub fn upgrade(&self) -> bool {
        matches!(self.setup.existing, Existing::Installed(_)) && self.setup.enrolled
    }

    /// Starts the install (once) with the form's answers.
    pub fn start_install(&mut self, ctx: &egui::Context) {
        if self.install.run.is_some() || self.install.error.is_some() {
            return;
        }
        let mut answers = self.form.to_answers();
        if self.upgrade()
            && let Some(c) = answers.cloud.as_mut()
        {
            c.connect_key = None;
        }
        match super::installer::InstallRun::start(
            answers,
            self.setup.install_options.clone(),
            ctx.clone(),
        ) {
            Ok(run) => self.install.run = Some(run),
            Err(e) => self.install.error = Some(format!("the install thread could not start: {e}")),
        }
    }

    /// The plan Install will carry out, for the Review page.
    pub fn plan_preview(&mut self) -> &ad_sync_core::install::Plan {
        let answers = self.form.to_answers();
        let opts = self.setup.install_options.clone();
        self.install
            .preview
            .get_or_insert_with(|| ad_sync_core::install::prepare(&answers, &opts).plan)
    }

    pub fn installed(&self) -> Option<&Answers> {
        match &self.setup.existing {
            Existing::Installed(a) => Some(a),
            _ => None,
        }
    }

    /// The text field a dialog fills.
    fn path_mut(&mut self, target: PickTarget) -> &mut String {
        match target {
            PickTarget::Folder => &mut self.form.install_dir,
            PickTarget::LdapCa => &mut self.form.ldap_ca_file,
            PickTarget::CloudCa => &mut self.form.cloud_ca_file,
            PickTarget::Export => &mut self.files.export_path,
        }
    }

    /// A path field with its Browse button: the path can always be typed (a server without a
    /// desktop portal has no dialog), or picked in a native dialog.
    pub fn path_field(
        &mut self,
        ui: &mut egui::Ui,
        target: PickTarget,
        label: &str,
        hint: &str,
        button: &str,
    ) {
        ui.horizontal(|ui| {
            ui.vertical(|ui| super::widgets::text_field(ui, label, self.path_mut(target), hint));
            if ui
                .add_enabled(!self.picking(), egui::Button::new(button))
                .clicked()
            {
                self.pick(target, ui.ctx());
            }
        });
        if let Some((t, n)) = &self.files.picker_note
            && *t == target
        {
            super::widgets::note(ui, n);
        }
    }

    /// A native file dialog, on its own thread (a portal dialog blocks until answered).
    fn pick(&mut self, target: PickTarget, ctx: &egui::Context) {
        if self.files.picker_rx.is_some() {
            return;
        }
        let (tx, rx) = mpsc::channel();
        let ctx = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name("ad-sync-picker".into())
            .spawn(move || {
                let dialog = rfd::FileDialog::new();
                let chosen = match target {
                    PickTarget::Folder => dialog.pick_folder(),
                    PickTarget::LdapCa | PickTarget::CloudCa => dialog
                        // As Windows, AD CS and OpenSSL export a CA: DER or Base-64 .cer/.crt,
                        // PEM, PKCS#7 bundles. The check reads the content, not the name.
                        .add_filter(
                            "CA certificates (.cer, .crt, .pem, .p7b)",
                            &["cer", "crt", "pem", "der", "p7b", "p7c"],
                        )
                        .add_filter("All files", &["*"])
                        .pick_file(),
                    PickTarget::Export => dialog
                        .set_file_name("ad-sync-answers.toml")
                        .add_filter("TOML", &["toml"])
                        .save_file(),
                };
                // The window closed meanwhile: nobody waits for the answer.
                let _ = tx.send((target, chosen));
                ctx.request_repaint();
            });
        match spawned {
            Ok(_) => {
                self.files.picker_rx = Some(rx);
                self.files.picker_note = None;
            }
            Err(e) => {
                self.files.picker_note = Some((
                    target,
                    format!("The file dialog could not open ({e}); type the path instead."),
                ))
            }
        }
    }

    pub fn picking(&self) -> bool {
        self.files.picker_rx.is_some()
    }

    pub(crate) fn poll_background(&mut self) {
        if let Some(rx) = &self.files.picker_rx {
            match rx.try_recv() {
                Ok((target, chosen)) => {
                    self.files.picker_rx = None;
                    match chosen {
                        Some(p) => *self.path_mut(target) = p.display().to_string(),
                        None => {
                            self.files.picker_note = Some((
                                target,
                                "No file was chosen (or no file dialog is available on this desktop); you can type the path instead."
                                    .into(),
                            ))
                        }
                    }
                }
                Err(mpsc::TryRecvError::Disconnected) => self.files.picker_rx = None,
                Err(mpsc::TryRecvError::Empty) => {}
            }
        }
        if let Some(rx) = &self.files.export_rx
            && let Ok(r) = rx.try_recv()
        {
            self.files.export_result = Some(r);
            self.files.export_rx = None;
        }
        if self.setup.password_source == PasswordSource::Reading
            && let Some(outcome) = self.validator.take_done(Slot::StoredPassword)
        {
            self.setup.password_source = match outcome {
                Outcome::Password(Ok(secret)) => {
                    if self.form.password.is_empty() {
                        self.form.password = zeroize::Zeroizing::new(secret.expose().to_string());
                    }
                    PasswordSource::Store(
                        ad_sync_core::secrets::FileStore::beside_config(&self.setup.config_path)
                            .describe(),
                    )
                }
                Outcome::Password(Err(e)) => PasswordSource::StoreFailed(e),
                Outcome::TimedOut(_) => {
                    PasswordSource::StoreFailed("reading the secret store timed out".into())
                }
                _ => PasswordSource::StoreFailed("the secret store was not read".into()),
            };
        }
    }

    /// Writes the answers file (no secrets) atomically, off the UI thread.
    pub fn export(&mut self, ctx: &egui::Context) {
        let path = PathBuf::from(self.files.export_path.trim());
        if self.files.export_path.trim().is_empty() {
            self.files.export_result =
                Some(Err("Export to: type a file path, or use Browse…".into()));
            return;
        }
        let text = match self.form.export_toml(!self.upgrade()) {
            Ok(t) => t,
            Err(e) => {
                self.files.export_result = Some(Err(e));
                return;
            }
        };
        let (tx, rx) = mpsc::channel();
        let ctx = ctx.clone();
        self.files.export_rx = Some(rx);
        self.files.export_result = None;
        std::thread::spawn(move || {
            // The window closed meanwhile: nobody waits for the answer.
            let _ = tx.send(write_atomically(&path, &text));
            ctx.request_repaint();
        });
    }

    pub fn exporting(&self) -> bool {
        self.files.export_rx.is_some()
    }
}

fn write_atomically(path: &std::path::Path, text: &str) -> Result<String, String> {
    use std::io::Write;
    let shown = path.display();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| {
        format!("Export to `{shown}`: the folder cannot be written ({e}); choose another folder")
    })?;
    tmp.write_all(text.as_bytes())
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| {
            format!("Export to `{shown}`: writing failed ({e}); check the disk and retry")
        })?;
    tmp.persist(path).map_err(|e| {
        format!(
            "Export to `{shown}`: cannot replace the file ({}); choose another name",
            e.error
        )
    })?;
    Ok(format!("Exported to {shown} (no secrets in it)"))
}

pub(crate) fn read_existing(
    path: &std::path::Path,
    found: ad_sync_core::install::Existing,
) -> Existing {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Existing::None,
        Err(e) => Existing::Unreadable(format!(
            "{} exists but cannot be inspected ({e}); re-run the wizard elevated to review it",
            path.display()
        )),
        Ok(_) => match found.config {
            Some(a) => Existing::Installed(Box::new(a)),
            None => Existing::Unreadable(format!(
                "{}. Fix the file (or move it away to set up afresh), then re-run the wizard",
                found.notes.join("; ")
            )),
        },
    }
}
