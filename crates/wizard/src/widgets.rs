//! The wizard's building blocks: labelled fields (every one tied to its label, so screen
//! readers and the tests find it by name), masked password fields that leave no copy in egui's
//! undo history, and the check view (spinner, then pass / warn / fail lines with the fix).

use super::validate::{Outcome, Slot, Validator, View};
use ad_sync_core::preflight::{CheckResult, Status};
use egui::{Color32, RichText, Ui};
use std::collections::HashSet;

pub const FIELD_WIDTH: f32 = 420.0;

/// The labels of the fields that hold a secret: their text is never written anywhere (see
/// `uidump`), even while "Show key" shows it on screen.
pub const PASSWORD_FIELD: &str = "Password";
pub const CONNECT_KEY_FIELD: &str = "Connect key";

/// A single-line text field under its label.
pub fn text_field(ui: &mut Ui, label: &str, value: &mut String, hint: &str) -> egui::Response {
    let l = ui.label(label);
    ui.add(
        egui::TextEdit::singleline(value)
            .hint_text(hint)
            .desired_width(FIELD_WIDTH),
    )
    .labelled_by(l.id)
}

/// A masked field for a password or key. egui's undo history would keep every version of the
/// text; it is cleared after each frame so the only copy is the caller's zeroizing buffer.
pub fn secret_field(ui: &mut Ui, label: &str, value: &mut String, hint: &str) -> egui::Response {
    let l = ui.label(label);
    let out = egui::TextEdit::singleline(value)
        .password(true)
        .hint_text(hint)
        .desired_width(FIELD_WIDTH)
        .show(ui);
    let mut state = out.state;
    state.clear_undoer();
    state.store(ui.ctx(), out.response.id);
    out.response.response.labelled_by(l.id)
}

/// A field's own problem, right under it.
pub fn field_error(ui: &mut Ui, message: &str, fix: &str) {
    ui.label(RichText::new(message).color(fail_color(ui)));
    if !fix.is_empty() {
        ui.label(RichText::new(format!("Fix: {fix}")).small());
    }
}

/// The same, for a reserved slot: one line each, cut with "…" at the slot's width (the whole
/// text shows on hover, and can be selected and copied).
pub fn field_error_line(ui: &mut Ui, message: &str, fix: &str) {
    ui.add(egui::Label::new(RichText::new(message).color(fail_color(ui))).truncate());
    if !fix.is_empty() {
        ui.add(egui::Label::new(RichText::new(format!("Fix: {fix}")).small()).truncate());
    }
}

/// A space of `rows` lines kept under a field whatever it holds, so a message that appears or
/// goes never moves the fields below it (the one the user is aiming at). What is drawn in it
/// should be one line per row (`field_error_line`, truncated labels).
pub fn reserved<R>(ui: &mut Ui, rows: usize, add: impl FnOnce(&mut Ui) -> R) -> R {
    let row = ui.text_style_height(&egui::TextStyle::Body) + ui.spacing().item_spacing.y;
    let height = row * rows as f32 - ui.spacing().item_spacing.y;
    let width = ui.available_width();
    ui.allocate_ui_with_layout(
        egui::vec2(width, height),
        egui::Layout::top_down(egui::Align::Min),
        |ui| {
            ui.set_min_size(egui::vec2(width, height));
            ui.set_max_width(width);
            add(ui)
        },
    )
    .inner
}

/// The egui memory key of "Next was pressed while this page was not ready" (cleared when the
/// page changes).
fn tried_id() -> egui::Id {
    egui::Id::unique("ad-sync-next-tried")
}

/// Next (or Enter) was tried on this page while it was not ready: every field now says what it
/// lacks.
pub fn next_tried(ui: &Ui) -> bool {
    ui.data(|d| d.get_temp::<bool>(tried_id()).unwrap_or(false))
}

pub fn set_next_tried(ctx: &egui::Context, tried: bool) {
    ctx.data_mut(|d| d.insert_temp(tried_id(), tried));
}

/// Whether an empty field may say so: only once the user left it or tried Next, never on a
/// page just opened.
pub fn may_complain(ui: &Ui, field: &egui::Response) -> bool {
    let left = field.id.with("left");
    if field.lost_focus() {
        ui.data_mut(|d| d.insert_temp(left, true));
    }
    next_tried(ui) || ui.data(|d| d.get_temp::<bool>(left).unwrap_or(false))
}

pub fn note(ui: &mut Ui, text: &str) {
    ui.label(RichText::new(text).weak());
}

/// One fact on a row: its name in a column of `key_width`, its value wrapped in the rest of the
/// width. Rows, not a grid: a grid cell takes its text's width, and a long value (Samba's
/// certificate subjects, a fingerprint, a path, a command line) would run off an 800-point
/// window instead of wrapping.
pub fn fact(
    ui: &mut Ui,
    key: impl Into<egui::WidgetText>,
    value: impl Into<egui::WidgetText>,
    key_width: f32,
) {
    ui.horizontal_top(|ui| {
        ui.allocate_ui_with_layout(
            egui::vec2(key_width, 0.0),
            egui::Layout::top_down(egui::Align::Min),
            |ui| {
                ui.set_min_width(key_width);
                ui.add(egui::Label::new(key).wrap())
            },
        );
        ui.add(egui::Label::new(value).wrap());
    });
}

/// A note on one line of a reserved slot: cut at its width, whole on hover.
pub fn note_line(ui: &mut Ui, text: &str) {
    ui.add(egui::Label::new(RichText::new(text).weak()).truncate());
}

fn fail_color(ui: &Ui) -> Color32 {
    if ui.visuals().dark_mode {
        Color32::from_rgb(255, 110, 100)
    } else {
        Color32::from_rgb(180, 20, 20)
    }
}

pub(crate) fn status_color(ui: &Ui, s: Status) -> Color32 {
    let dark = ui.visuals().dark_mode;
    match s {
        Status::Pass if dark => Color32::from_rgb(110, 210, 120),
        Status::Pass => Color32::from_rgb(20, 120, 40),
        Status::Warn if dark => Color32::from_rgb(240, 190, 70),
        Status::Warn => Color32::from_rgb(150, 90, 0),
        Status::Fail => fail_color(ui),
        Status::Skip => ui.visuals().weak_text_color(),
    }
}

/// One check: status and summary, what was found, and the fix.
pub fn check_line(ui: &mut Ui, c: &CheckResult) {
    ui.label(
        RichText::new(format!("{}: {}", c.status.label(), c.summary))
            .color(status_color(ui, c.status)),
    );
    if c.detail.is_empty() && c.fix.is_empty() {
        return;
    }
    ui.indent(c.id, |ui| {
        if !c.detail.is_empty() {
            ui.label(RichText::new(&c.detail).small().weak());
        }
        if !c.fix.is_empty() {
            ui.label(RichText::new(format!("Fix: {}", c.fix)).small());
        }
    });
}

/// Whether a page may go on, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Ready,
    Blocked(String),
}

impl Gate {
    pub fn and(self, other: Gate) -> Gate {
        match self {
            Gate::Ready => other,
            blocked => blocked,
        }
    }

    pub fn is_ready(&self) -> bool {
        *self == Gate::Ready
    }
}

/// The key under which a warning's acknowledgement is remembered: a new warning needs a new one.
pub fn ack_key(c: &CheckResult) -> String {
    format!("{}\u{0}{}", c.id, c.summary)
}

/// Shows the checks `ids` of a finished report (and any failure among `context`, the checks
/// earlier pages own, since it explains why this page's could not run) and decides the gate.
/// A warning needs its box ticked; a skip is never a pass.
pub fn report_lines(
    ui: &mut Ui,
    checks: &[CheckResult],
    ids: &[&str],
    context: &[&str],
    acks: &mut HashSet<String>,
) -> Gate {
    let mut gate = Gate::Ready;
    for c in checks
        .iter()
        .filter(|c| context.contains(&c.id) && c.status == Status::Fail)
    {
        check_line(ui, c);
        gate = gate.and(Gate::Blocked(format!("{} failed", c.id)));
    }
    for id in ids {
        let Some(c) = checks.iter().find(|c| c.id == *id) else {
            gate = gate.and(Gate::Blocked(format!("{id} was not reported")));
            continue;
        };
        check_line(ui, c);
        match c.status {
            Status::Pass => {}
            Status::Fail => gate = gate.and(Gate::Blocked(format!("{id} failed"))),
            Status::Skip => {
                gate = gate.and(Gate::Blocked(format!("{id} did not run: {}", c.summary)))
            }
            Status::Warn => {
                let key = ack_key(c);
                let mut acked = acks.contains(&key);
                ui.indent(("ack", c.id), |ui| {
                    if ui
                        .checkbox(&mut acked, format!("I understand this warning ({})", c.id))
                        .changed()
                    {
                        if acked {
                            acks.insert(key.clone());
                        } else {
                            acks.remove(&key);
                        }
                    }
                });
                if !acked {
                    gate = gate.and(Gate::Blocked(format!("acknowledge the warning {id}")));
                }
            }
        }
    }
    gate
}

/// Spinner, cancel and retry around a slot's result; `done` draws a finished outcome.
pub fn check_view(
    ui: &mut Ui,
    validator: &mut Validator,
    slot: Slot,
    what: &str,
    done: impl FnOnce(&mut Ui, &Outcome) -> Gate,
) -> Gate {
    let mut action = None;
    let gate = match validator.view(slot) {
        View::Waiting => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!("Waiting to check {what}…"));
            });
            Gate::Blocked(format!("{what} is not checked yet"))
        }
        View::Running { elapsed, limit } => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!(
                    "Checking {what}… {} s (gives up after {} s)",
                    elapsed.as_secs(),
                    limit.as_secs()
                ));
                if ui.button("Cancel check").clicked() {
                    action = Some(false);
                }
            });
            // Redraw each second so the elapsed time moves even when nothing else happens.
            ui.ctx()
                .request_repaint_after(std::time::Duration::from_millis(250));
            Gate::Blocked(format!("{what} is being checked"))
        }
        View::Done(Outcome::Cancelled) => {
            ui.horizontal(|ui| {
                ui.label(RichText::new("Check cancelled.").color(status_color(ui, Status::Warn)));
                if ui.button("Retry check").clicked() {
                    action = Some(true);
                }
            });
            Gate::Blocked(format!("the check of {what} was cancelled"))
        }
        View::Done(Outcome::TimedOut(limit)) => {
            field_error(
                ui,
                &format!(
                    "Checking {what} did not finish within {} s",
                    limit.as_secs()
                ),
                "Make sure the server answers (firewall, service running), then retry; on a slow link raise the timeout.",
            );
            if ui.button("Retry check").clicked() {
                action = Some(true);
            }
            Gate::Blocked(format!("the check of {what} timed out"))
        }
        View::Done(outcome) => {
            let gate = done(ui, outcome);
            if ui.small_button("Check again").clicked() {
                action = Some(true);
            }
            gate
        }
    };
    match action {
        Some(true) => validator.retry(slot),
        Some(false) => validator.cancel(slot),
        None => {}
    }
    gate
}
