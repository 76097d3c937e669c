//! The window around the pages: header, the list of steps, Back / Next / Cancel, Enter = Next,
//! Esc = Cancel (asks first), and review mode when a config already exists. The window is the
//! only place the page changes: on Back / Next, or where a page's `Shown` asks to go.

use crate::backend::{Backend, Live};
use crate::form::Form;
use crate::nav::{Page, Shown};
use crate::state::{Existing, Files, Install, PasswordSource, Setup, State, read_existing};
use crate::validate::{Job, Slot, Validator};
use crate::widgets::Gate;
use egui::{Key, RichText, UiBuilder};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Options {
    pub config_path: PathBuf,
    pub backend: Arc<dyn Backend>,
    pub elevated: bool,
    pub debounce: Duration,
    /// The wizard bench: print the time to the first frame on stdout, then close after this
    /// many frames drawn while a check is in flight and print their times.
    pub bench: Option<u32>,
    /// Install every path under this folder instead of `/` (tests); `config_path` stays the
    /// installed path.
    pub prefix: Option<PathBuf>,
    /// The folder holding the `ad-sync-agent` to install (default: beside this program).
    pub agent_dir: Option<PathBuf>,
    /// The DNS server discovery asks instead of this host's resolver (`AD_SYNC_DNS_SERVER`).
    pub dns_server: Result<Option<std::net::IpAddr>, String>,
    /// This host's DNS domain: what "Domain to search" starts as.
    pub host_domain: Option<String>,
    /// The wizard bench: open on this page (its title, e.g. "Root User container") when a config
    /// is installed, and close once nothing is in flight there any more.
    pub bench_page: Option<String>,
    /// Write what is on screen to this file every frame (`AD_SYNC_SETUP_UI_DUMP`; the
    /// real-window test reads it to find what to click).
    pub ui_dump: Option<PathBuf>,
}

impl Options {
    pub fn live(config_path: PathBuf) -> Options {
        Options {
            config_path,
            backend: Arc::new(Live),
            elevated: super::elevated(),
            debounce: Duration::from_millis(400),
            bench: None,
            prefix: None,
            agent_dir: None,
            dns_server: ad_sync_core::directory::discover::server_from_env(),
            host_domain: ad_sync_core::directory::discover::host_domain(),
            bench_page: None,
            ui_dump: std::env::var_os(crate::uidump::ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        }
    }
}

/// A button's text with its Alt key's letter underlined (the first `key` in it).
fn mnemonic(ui: &egui::Ui, text: &str, key: char) -> egui::text::LayoutJob {
    let mut job = egui::text::LayoutJob::default();
    let font = egui::TextStyle::Button.resolve(ui.style());
    let color = ui.visuals().text_color();
    let at = text.find(key);
    for (i, ch) in text.char_indices() {
        let mut format = egui::TextFormat::simple(font.clone(), color);
        if Some(i) == at {
            format.underline = egui::Stroke::new(1.0, color);
        }
        job.append(&ch.to_string(), 0.0, format);
    }
    job
}

/// Frame timings for the bench: the first frame, then frame times while a check runs.
struct FrameStats {
    frames: u32,
    started: Instant,
    /// Opened on a page of its own: close once nothing is in flight there.
    on_page: bool,
    tree_first: bool,
    tree_open: bool,
    first_done: bool,
    last: Option<Instant>,
    cpu: Vec<f32>,
    gaps: Vec<f32>,
}

pub struct WizardApp {
    state: State,
    confirm_cancel: bool,
    stats: Option<FrameStats>,
    /// The first frame was logged with the renderer that drew it.
    announced: bool,
}

impl WizardApp {
    pub fn new(ctx: &egui::Context, options: Options) -> Result<WizardApp, String> {
        // How this machine can protect the secrets is probed by running systemd-creds (cached
        // once per process); the Review page's plan needs it. Probed here, off the UI thread,
        // long before Review, so drawing that page never waits on a child process.
        std::thread::spawn(ad_sync_core::secrets::Protection::detect);
        if let Some(path) = &options.ui_dump {
            ctx.add_plugin(crate::uidump::UiDump::new(path.clone()));
        }
        let mut validator = Validator::new(options.backend, ctx.clone())
            .map_err(|e| format!("the background checker could not start: {e}"))?;
        validator.debounce = options.debounce;
        let mut install_options = ad_sync_core::install::Options::new(options.config_path.clone());
        install_options.prefix = options.prefix.clone();
        install_options.elevated = options.elevated;
        if let Some(dir) = &options.agent_dir {
            install_options.source_dir = dir.clone();
        }
        // Without systemd the service is written and enabled, and the Finish page says it was
        // not started; the check would otherwise refuse.
        install_options.no_start =
            !cfg!(windows) && !ad_sync_core::install::service::systemd_running();
        let can_start = if options.prefix.is_some() {
            Err("the install is staged under a folder (--prefix), not on this machine's running system".to_string())
        } else if install_options.no_start {
            Err("systemd is not running on this machine".to_string())
        } else {
            Ok(())
        };
        let layout = ad_sync_core::install::layout::Layout::new(
            &options.config_path,
            std::path::Path::new(""),
            options.prefix.as_deref(),
        );
        let real_config = layout.real(&options.config_path);
        // One read of what is installed: the config (migrated, as `install` reads it) and
        // whether its agent is enrolled.
        let found = ad_sync_core::install::Existing::detect(&layout);
        let enrolled = found.mode == ad_sync_core::install::Mode::Upgrade;
        let existing = read_existing(&real_config, found);
        let (mut form, mut page) = match &existing {
            Existing::Installed(a) => (Form::from_config(a), Page::Review),
            _ => (Form::default(), Page::Welcome),
        };
        if let (Existing::Installed(_), Some(title), Some(_)) =
            (&existing, &options.bench_page, options.bench)
            && let Some(p) = Page::ALL.iter().find(|p| p.title() == title)
        {
            page = *p;
        }
        // The proxy this machine uses (environment, WinHTTP, Internet Options), proposed for a
        // new install: the service will have none of them unless the config names it.
        let proxy_found = ad_sync_core::cloud::system_proxy::detect();
        if !matches!(existing, Existing::Installed(_))
            && let Ok(Some(found)) = &proxy_found
        {
            form.proxy = found.url.clone();
            form.proxy_username = found.username.clone().unwrap_or_default();
        }
        if form.discover_domain.is_empty()
            && let Some(d) = &options.host_domain
        {
            form.discover_domain = d.clone();
        }
        let password_source = if matches!(existing, Existing::Installed(_)) {
            validator.request(
                Slot::StoredPassword,
                Job::StoredPassword(real_config.clone()),
            );
            PasswordSource::Reading
        } else {
            PasswordSource::Typed
        };
        crate::theme::apply(ctx);
        Ok(WizardApp {
            state: State {
                form,
                page,
                setup: Setup {
                    existing,
                    config_path: options.config_path,
                    elevated: options.elevated,
                    enrolled,
                    password_source,
                    install_options,
                    dns_server: options.dns_server,
                    discovered_on_open: false,
                    dc_proposed: false,
                    can_start,
                    proxy_found,
                },
                validator,
                acks: HashSet::new(),
                discover_for: None,
                files: Files::default(),
                install: Install::default(),
                trees: Default::default(),
            },
            confirm_cancel: false,
            announced: false,
            stats: options.bench.map(|frames| FrameStats {
                frames,
                started: Instant::now(),
                on_page: options.bench_page.is_some(),
                tree_first: false,
                tree_open: false,
                first_done: false,
                last: None,
                cpu: Vec::new(),
                gaps: Vec::new(),
            }),
        })
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn state_mut(&mut self) -> &mut State {
        &mut self.state
    }

    fn frame_ui(&mut self, ui: &mut egui::Ui) {
        let s = &mut self.state;
        s.validator.pump();
        s.poll_background();
        // The pages of this setup: AD as a source's only when the direction has AD as a source.
        let pages = Page::shown(s.form.sync.direction.from_ad());

        let full = ui.max_rect();
        let header_h = 56.0;
        let footer_h = 52.0;
        let steps_w = 190.0;
        let header =
            egui::Rect::from_min_max(full.min, egui::pos2(full.max.x, full.min.y + header_h));
        let footer =
            egui::Rect::from_min_max(egui::pos2(full.min.x, full.max.y - footer_h), full.max);
        let steps = egui::Rect::from_min_max(
            egui::pos2(full.min.x, header.max.y),
            egui::pos2(full.min.x + steps_w, footer.min.y),
        );
        let body = egui::Rect::from_min_max(
            egui::pos2(steps.max.x, header.max.y),
            egui::pos2(full.max.x, footer.min.y),
        );

        ui.painter().rect_filled(full, 0.0, ui.visuals().panel_fill);
        let band = crate::theme::band(ui.visuals());
        ui.painter().rect_filled(header, 0.0, band);
        ui.painter()
            .rect_filled(steps, 0.0, ui.visuals().extreme_bg_color);
        ui.painter().rect_filled(footer, 0.0, band);

        ui.scope_builder(
            UiBuilder::new().max_rect(header.shrink2(egui::vec2(16.0, 8.0))),
            |ui| {
                ui.horizontal(|ui| {
                    ui.heading(format!(
                        "Step {} of {}: {}",
                        s.page.index_in(&pages) + 1,
                        pages.len(),
                        s.page.title()
                    ));
                    ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                        ui.label(RichText::new(crate::TITLE).weak());
                    });
                });
                let mode = match &s.setup.existing {
                    Existing::Installed(_) => format!(
                        "Upgrade: reviewing the configuration in {}",
                        s.setup.config_path.display()
                    ),
                    Existing::Unreadable(_) => {
                        "Fresh setup (the existing configuration cannot be read)".to_string()
                    }
                    Existing::None => "Fresh setup of the ad-sync agent".to_string(),
                };
                ui.label(RichText::new(mode).weak());
            },
        );

        ui.scope_builder(UiBuilder::new().max_rect(steps.shrink(12.0)), |ui| {
            for &p in &pages {
                let text = format!("{}. {}", p.index_in(&pages) + 1, p.title());
                if p == s.page {
                    ui.label(RichText::new(format!("> {text}")).strong());
                } else {
                    ui.label(RichText::new(format!("   {text}")).weak());
                }
            }
        });

        let modal_open = self.confirm_cancel;
        let shown = ui
            .scope_builder(
                UiBuilder::new().max_rect(body.shrink2(egui::vec2(16.0, 10.0))),
                |ui| {
                    egui::ScrollArea::vertical()
                        .id_salt(("page", s.page.index_in(&pages)))
                        .auto_shrink([false, false])
                        .show(ui, |ui| {
                            ui.add_enabled_ui(!modal_open, |ui| super::pages::show(s.page, s, ui))
                                .inner
                        })
                        .inner
                },
            )
            .inner;

        let Shown { gate, go: asked } = shown;
        let mut go: Option<Page> = asked;
        let mut close = false;
        let installing = s.install.run.as_ref().is_some_and(|r| r.running());
        let installed = s.install.run.as_ref().is_some_and(|r| {
            r.outcome
                .as_ref()
                .is_some_and(|o| o.result != ad_sync_core::install::InstallResult::RolledBack)
        });
        ui.scope_builder(
            UiBuilder::new().max_rect(footer.shrink2(egui::vec2(16.0, 10.0))),
            |ui| {
                ui.add_enabled_ui(!modal_open, |ui| {
                    // Windows' order, bottom right: < Back, Next > (the default button: Enter),
                    // Cancel; Alt+B, Alt+N and Alt+C press them (the letter is underlined).
                    ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                        let ctx = ui.ctx().clone();
                        let alt = |key: Key| ctx.input(|i| i.modifiers.alt && i.key_pressed(key));
                        // Cancel (rightmost).
                        if s.page == Page::Install && installing {
                            let can = s.install.run.as_ref().is_some_and(|r| r.cancellable());
                            if (ui
                                .add_enabled(
                                    can,
                                    egui::Button::new(mnemonic(ui, "Cancel install", 'C')),
                                )
                                .clicked()
                                || (can && alt(Key::C)))
                                && let Some(r) = &s.install.run
                            {
                                r.cancel();
                            }
                        } else if s.page == Page::Finish {
                            // Finish has one button, Close, in Next's place.
                        } else if installed {
                            if ui.button(mnemonic(ui, "Close", 'C')).clicked() || alt(Key::C) {
                                close = true;
                            }
                        } else if ui.button(mnemonic(ui, "Cancel", 'C')).clicked() || alt(Key::C) {
                            self.confirm_cancel = true;
                        }
                        let (next_label, next_key) = match s.page {
                            Page::Review => ("Install", 'I'),
                            Page::Finish => ("Close", 'C'),
                            _ => ("Next >", 'N'),
                        };
                        let can_next = gate.is_ready()
                            && (s.page.next_in(&pages).is_some() || s.page == Page::Finish);
                        let why = match (&gate, s.page) {
                            (Gate::Blocked(why), Page::Review) => {
                                format!("Not ready to install: {why}")
                            }
                            (Gate::Blocked(why), Page::Install) => {
                                format!("Next is available when the install has finished: {why}")
                            }
                            (Gate::Blocked(why), _) => format!("Next is not available yet: {why}"),
                            (Gate::Ready, _) => String::new(),
                        };
                        let next = ui.add_enabled(
                            can_next,
                            egui::Button::new(mnemonic(ui, next_label, next_key))
                                .stroke(ui.visuals().selection.stroke),
                        );
                        let next_alt = alt(match next_key {
                            'I' => Key::I,
                            'C' => Key::C,
                            _ => Key::N,
                        });
                        let enter = ui.input(|i| i.key_pressed(Key::Enter)) || next_alt;
                        // Next tried on a page that is not ready (Enter, or a click on the
                        // greyed button): every field now says what it lacks.
                        let pressed_greyed = ui.input(|i| {
                            i.pointer.any_click()
                                && i.pointer
                                    .interact_pos()
                                    .is_some_and(|p| next.rect.contains(p))
                        });
                        if !can_next && (enter || pressed_greyed) {
                            crate::widgets::set_next_tried(ui.ctx(), true);
                        }
                        if next.clicked() || (enter && can_next) {
                            if s.page == Page::Finish {
                                close = true;
                            } else {
                                go = s.page.next_in(&pages);
                            }
                        }
                        // Back: never while installing or once installed; after a rollback or a
                        // refusal, back to Review to fix things and try again.
                        let back_ok = match s.page {
                            Page::Install => !installing && !installed,
                            Page::Finish => false,
                            _ => true,
                        };
                        if back_ok
                            && let Some(back) = s.page.back_in(&pages)
                            && (ui.button(mnemonic(ui, "< Back", 'B')).clicked() || alt(Key::B))
                        {
                            go = Some(back);
                            if s.page == Page::Install {
                                s.install.run = None;
                                s.install.error = None;
                            }
                        }
                        if !why.is_empty() {
                            ui.with_layout(
                                egui::Layout::left_to_right(egui::Align::Center),
                                |ui| {
                                    ui.add(
                                        egui::Label::new(
                                            RichText::new(crate::widgets::plain(&why)).weak(),
                                        )
                                        .wrap(),
                                    );
                                },
                            );
                        }
                    });
                });
            },
        );
        if let Some(p) = go {
            if p == Page::Review || s.page == Page::Review {
                s.install.preview = None;
            }
            if p != s.page {
                crate::widgets::set_next_tried(ui.ctx(), false);
            }
            s.page = p;
        }
        if close {
            s.form.forget_secrets();
            ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
        }
        if let Some(r) = s.install.run.as_mut() {
            r.pump();
        }

        let busy = self.state.install.run.is_some();
        if !self.confirm_cancel && !busy && ui.input(|i| i.key_pressed(Key::Escape)) {
            self.confirm_cancel = true;
        }
        if self.confirm_cancel {
            self.cancel_dialog(ui);
        }
        self.bench_frame(ui);
    }

    fn cancel_dialog(&mut self, ui: &mut egui::Ui) {
        let modal = egui::Modal::new(egui::Id::unique("confirm-cancel")).show(ui.ctx(), |ui| {
            ui.heading("Leave setup?");
            ui.label("Nothing has been written to this server, and no connect key was used.");
            ui.horizontal(|ui| {
                if ui.button("Leave setup").clicked() {
                    self.state.form.forget_secrets();
                    ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
                    self.confirm_cancel = false;
                }
                if ui.button("Continue setup").clicked() {
                    self.confirm_cancel = false;
                }
            });
        });
        if modal.should_close() {
            self.confirm_cancel = false;
        }
    }

    fn bench_frame(&mut self, ui: &egui::Ui) {
        let Some(st) = &mut self.stats else { return };
        let now = Instant::now();
        if !st.first_done {
            st.first_done = true;
            // The bench times process start to this line itself; this is the part after the
            // app was created (window and GPU set-up excluded).
            println!(
                "first-frame after-app-created-ms {:.1}",
                st.started.elapsed().as_secs_f64() * 1000.0
            );
        }
        if self.state.page == Page::RootDn {
            let (top, open) = self.state.trees.root.loaded(&self.state.validator);
            let ms = st.started.elapsed().as_secs_f64() * 1000.0;
            if top && !st.tree_first {
                st.tree_first = true;
                println!("tree-first-level-ms {ms:.1}");
            }
            if open && !st.tree_open {
                st.tree_open = true;
                println!("tree-open-levels-ms {ms:.1}");
            }
        }
        let busy = self.state.validator.busy();
        if st.on_page
            && !busy
            && !st.gaps.is_empty()
            && (st.tree_open || self.state.page != Page::RootDn)
        {
            ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
        }
        if busy {
            if let Some(last) = st.last {
                st.gaps
                    .push(now.duration_since(last).as_secs_f32() * 1000.0);
            }
            ui.ctx().request_repaint();
        }
        st.last = Some(now);
        if st.gaps.len() as u32 >= st.frames {
            ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
        }
    }

    /// Per-frame CPU time as eframe measures it (bench only).
    fn bench_cpu(&mut self, cpu: Option<f32>) {
        if let (Some(st), Some(cpu)) = (&mut self.stats, cpu)
            && self.state.validator.busy()
        {
            st.cpu.push(cpu * 1000.0);
        }
    }
}

impl Drop for WizardApp {
    fn drop(&mut self) {
        self.state.form.forget_secrets();
        if let Some(st) = &self.stats {
            let pct = |v: &[f32], q: f64| -> f32 {
                let mut v = v.to_vec();
                v.sort_by(f32::total_cmp);
                v.get(((v.len() as f64 - 1.0) * q).round().max(0.0) as usize)
                    .copied()
                    .unwrap_or(f32::NAN)
            };
            let peak_kib = std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|t| {
                    t.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                        l.split_whitespace()
                            .nth(1)
                            .and_then(|v| v.parse::<u64>().ok())
                    })
                })
                .unwrap_or(0);
            println!(
                "peak-rss-kib {peak_kib} frames-in-flight {} cpu-p50-ms {:.2} cpu-p99-ms {:.2} interval-p50-ms {:.2} interval-p99-ms {:.2}",
                st.cpu.len(),
                pct(&st.cpu, 0.5),
                pct(&st.cpu, 0.99),
                pct(&st.gaps, 0.5),
                pct(&st.gaps, 0.99)
            );
        }
    }
}

impl eframe::App for WizardApp {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        self.bench_cpu(frame.info().cpu_usage);
        self.frame_ui(ui);
        if !self.announced {
            self.announced = true;
            let renderer = frame.wgpu_render_state().map_or_else(
                || "no wgpu renderer".to_string(),
                |rs| {
                    let info = rs.adapter.get_info();
                    format!("{:?} on {}", info.backend, info.name)
                },
            );
            tracing::info!("the wizard's first frame is drawn ({renderer})");
        }
    }
}
