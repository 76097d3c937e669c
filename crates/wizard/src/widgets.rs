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

/// A field's own problem, right under it, wrapped (never cut: the whole message is on screen,
/// for the keyboard and over RDP alike).
pub fn field_error(ui: &mut Ui, message: &str, fix: &str) {
    ui.add(egui::Label::new(RichText::new(plain(message)).color(crate::theme::fail(ui))).wrap());
    if !fix.is_empty() {
        ui.add(egui::Label::new(format!("What to do: {}", plain(fix))).wrap());
    }
}

/// The same, in a field's reserved space (which grows when the message needs more lines).
pub fn field_error_line(ui: &mut Ui, message: &str, fix: &str) {
    field_error(ui, message, fix);
}

/// Text for the screen: the Markdown marks that check messages carry for the terminal and the
/// docs (`code`, **bold**) are taken out.
pub fn plain(text: &str) -> String {
    text.replace('`', "").replace("**", "")
}

/// A space of at least `rows` lines kept under a field whatever it holds, so a message that
/// appears or goes does not move the fields below it (the one the user is aiming at); a message
/// longer than that wraps and the space grows rather than cutting it.
pub fn reserved<R>(ui: &mut Ui, rows: usize, add: impl FnOnce(&mut Ui) -> R) -> R {
    let row = ui.text_style_height(&egui::TextStyle::Body) + ui.spacing().item_spacing.y;
    let height = row * rows as f32 - ui.spacing().item_spacing.y;
    ui.vertical(|ui| {
        ui.set_min_height(height);
        ui.set_max_width(ui.available_width());
        add(ui)
    })
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
    ui.add(egui::Label::new(RichText::new(plain(text)).weak()).wrap());
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

/// A note in a reserved slot (wrapped like any note).
pub fn note_line(ui: &mut Ui, text: &str) {
    note(ui, text);
}

pub(crate) fn status_color(ui: &Ui, s: Status) -> Color32 {
    crate::theme::status(ui, s)
}

/// The word for a check's status (what a screen reader says before its sentence).
pub fn status_word(s: Status) -> &'static str {
    match s {
        Status::Pass => "Passed",
        Status::Warn => "Warning",
        Status::Fail => "Failed",
        Status::Skip => "Not checked",
    }
}

/// A check's status as an icon drawn in its colour, a line high: a tick in a disc (passed), an
/// exclamation mark in a triangle (warning), a cross in a disc (failed), a ring (not checked).
/// Drawn, not a font glyph: no font on the server needs to have it.
pub fn status_icon(ui: &mut Ui, s: Status) {
    let size = ui.text_style_height(&egui::TextStyle::Body);
    let (rect, _) = ui.allocate_exact_size(egui::vec2(size, size), egui::Sense::hover());
    let color = status_color(ui, s);
    let mark = egui::Stroke::new(size * 0.12, ui.visuals().panel_fill);
    let painter = ui.painter();
    let c = rect.center();
    let r = size * 0.45;
    let at = |x: f32, y: f32| c + egui::vec2(x * r, y * r);
    match s {
        Status::Pass => {
            painter.circle_filled(c, r, color);
            painter.line(vec![at(-0.5, 0.0), at(-0.12, 0.4), at(0.5, -0.35)], mark);
        }
        Status::Fail => {
            painter.circle_filled(c, r, color);
            painter.line_segment([at(-0.4, -0.4), at(0.4, 0.4)], mark);
            painter.line_segment([at(0.4, -0.4), at(-0.4, 0.4)], mark);
        }
        Status::Warn => {
            painter.add(egui::Shape::convex_polygon(
                vec![at(0.0, -1.0), at(1.0, 0.8), at(-1.0, 0.8)],
                color,
                egui::Stroke::NONE,
            ));
            painter.line_segment([at(0.0, -0.45), at(0.0, 0.2)], mark);
            painter.circle_filled(at(0.0, 0.5), mark.width * 0.6, mark.color);
        }
        Status::Skip => {
            painter.circle_stroke(c, r * 0.85, egui::Stroke::new(size * 0.1, color));
        }
    }
}

/// An icon and a sentence beside it, wrapped; read out as "Word: sentence".
pub fn status_text(ui: &mut Ui, s: Status, text: RichText, word: &str) {
    ui.horizontal_top(|ui| {
        status_icon(ui, s);
        let spoken = format!("{word}: {}", text.text());
        let r = ui.add(egui::Label::new(text).wrap());
        r.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Label, true, &spoken));
    });
}

/// One check: its icon and sentence in its status's colour (read out as "Failed: …"), what was
/// found, and what to do, all wrapped at the page's width.
pub fn check_line(ui: &mut Ui, c: &CheckResult) {
    status_text(
        ui,
        c.status,
        RichText::new(plain(&c.summary)).color(status_color(ui, c.status)),
        status_word(c.status),
    );
    if c.detail.is_empty() && c.fix.is_empty() {
        return;
    }
    ui.indent(c.id, |ui| {
        if !c.detail.is_empty() {
            ui.add(egui::Label::new(plain(&c.detail)).wrap());
        }
        if !c.fix.is_empty() && c.status != Status::Pass {
            ui.add(
                egui::Label::new(RichText::new(format!("What to do: {}", plain(&c.fix))).strong())
                    .wrap(),
            );
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
/// Problems come first, each open with what to do; passed checks are folded under "N checks
/// passed" (one alone is shown as it is). A warning needs its box ticked; a skip is never a
/// pass. What the gate says is in words: no check id reaches the screen.
pub fn report_lines(
    ui: &mut Ui,
    checks: &[CheckResult],
    ids: &[&str],
    context: &[&str],
    acks: &mut HashSet<String>,
) -> Gate {
    let mut gate = Gate::Ready;
    let mut passed = Vec::new();
    for c in checks
        .iter()
        .filter(|c| context.contains(&c.id) && c.status == Status::Fail)
    {
        check_line(ui, c);
        gate = gate.and(Gate::Blocked(plain(&c.summary)));
    }
    for id in ids {
        let Some(c) = checks.iter().find(|c| c.id == *id) else {
            gate = gate.and(Gate::Blocked(
                "a check did not report; press Check again".into(),
            ));
            continue;
        };
        match c.status {
            Status::Pass => passed.push(c),
            Status::Fail => {
                check_line(ui, c);
                gate = gate.and(Gate::Blocked(plain(&c.summary)))
            }
            Status::Skip => {
                check_line(ui, c);
                gate = gate.and(Gate::Blocked(format!(
                    "a check could not run: {}",
                    plain(&c.summary)
                )))
            }
            Status::Warn => {
                check_line(ui, c);
                let key = ack_key(c);
                let mut acked = acks.contains(&key);
                ui.indent(("ack", c.id), |ui| {
                    if ui
                        .checkbox(&mut acked, "I understand this warning and want to go on")
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
                    gate = gate.and(Gate::Blocked(format!(
                        "the warning is not acknowledged: {}",
                        plain(&c.summary)
                    )));
                }
            }
        }
    }
    match passed.len() {
        0 => {}
        1 => check_line(ui, passed[0]),
        n => {
            egui::CollapsingHeader::new(
                RichText::new(format!("{n} checks passed")).color(status_color(ui, Status::Pass)),
            )
            .id_salt(("passed", ids.first().copied().unwrap_or_default()))
            .default_open(false)
            .show(ui, |ui| {
                for c in passed {
                    check_line(ui, c);
                }
            });
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

/// A long piece of work: a bar when how much is done is known (a spinner when not), and the
/// sentence with its counts beside it (its own label, so a screen reader reads the counts and
/// the text keeps the theme's contrast instead of sitting on the bar's fill).
pub fn progress(ui: &mut Ui, fraction: Option<f32>, text: &str) {
    match fraction {
        Some(f) => {
            ui.add(
                egui::ProgressBar::new(f.clamp(0.0, 1.0))
                    .desired_width(ui.available_width().min(520.0))
                    .desired_height(12.0),
            );
            ui.add(egui::Label::new(plain(text)).wrap());
        }
        None => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.add(egui::Label::new(plain(text)).wrap());
            });
        }
    }
}
