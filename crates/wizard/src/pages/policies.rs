//! Page 10: what the agent does when something leaves the cloud, how it keeps memberships and
//! lockouts, whether it takes over what AD already holds, and the deletion threshold. Every
//! question, label and sentence comes from `ad_sync_core::policy::POLICIES`, the one table the
//! planner's test proves; the page adds nothing of its own about what a policy does.

use crate::state::State;
use crate::widgets::{Gate, note};
use ad_sync_core::policy::{self, POLICIES, Policy};
use egui::{RichText, Ui};

/// The policies drawn before the threshold: those that delete or disable.
const DESTRUCTIVE: [&str; 3] = [
    "user_disconnection_action",
    "membership_disconnection_action",
    "group_disconnection_action",
];

pub fn ui(s: &mut State, ui: &mut Ui) -> Gate {
    ui.label("Choose which way users travel, and what the agent does in AD when users and groups leave the cloud. Each choice says what happens; Review lists them again.");
    let managed = s
        .agent_status()
        .map(|st| st.managed_users + st.managed_groups);
    let sync = &mut s.form.sync;
    direction_ui(ui, sync);
    for p in POLICIES.iter().filter(|p| DESTRUCTIVE.contains(&p.key)) {
        policy_ui(ui, p, sync);
    }
    threshold(ui, sync, managed);
    for p in POLICIES.iter().filter(|p| !DESTRUCTIVE.contains(&p.key)) {
        policy_ui(ui, p, sync);
    }
    Gate::Ready
}

/// Which way users travel (`policy::DIRECTIONS`): with AD as a source, the next page asks
/// for the scope and the attribute map.
fn direction_ui(ui: &mut Ui, sync: &mut ad_sync_core::answers::Sync) {
    heading(ui, policy::DIRECTION_QUESTION);
    for c in policy::DIRECTIONS {
        let label = if c.direction == ad_sync_core::answers::Direction::default() {
            format!("{} (default)", c.label)
        } else {
            c.label.to_string()
        };
        if ui.radio(sync.direction == c.direction, label).clicked() {
            sync.direction = c.direction;
        }
    }
    ui.indent("direction", |ui| {
        note(ui, policy::direction_choice(sync.direction).does);
    });
}

fn heading(ui: &mut Ui, text: &str) {
    ui.add_space(6.0);
    ui.label(RichText::new(text).strong());
}

/// One policy: its question, a radio button per choice, what the chosen one does, and what
/// holds whatever is chosen.
fn policy_ui(ui: &mut Ui, p: &Policy, sync: &mut ad_sync_core::answers::Sync) {
    heading(ui, p.question);
    let current = p.value(sync);
    for c in p.choices {
        if ui.radio(current == c.value, p.label(c)).clicked() {
            p.set(sync, c.value);
        }
    }
    ui.indent(p.key, |ui| {
        note(ui, p.chosen(sync).does);
        for (text, _) in p.always {
            note(ui, text);
        }
    });
}

fn threshold(ui: &mut Ui, sync: &mut ad_sync_core::answers::Sync, managed: Option<usize>) {
    heading(ui, "Deletion threshold");
    let row = |ui: &mut Ui,
               label: &str,
               value: &mut u32,
               range: std::ops::RangeInclusive<u32>,
               unit: &str| {
        ui.horizontal(|ui| {
            let l = ui.label(label);
            ui.add(
                egui::DragValue::new(value)
                    .range(range)
                    .speed(1.0)
                    .suffix(unit),
            )
            .labelled_by(l.id);
        });
    };
    row(
        ui,
        "Most users and groups in the window",
        &mut sync.deletion_threshold,
        0..=1_000_000,
        "",
    );
    row(
        ui,
        "Most of those the agent manages",
        &mut sync.deletion_threshold_percent,
        0..=100,
        " %",
    );
    row(
        ui,
        "Window",
        &mut sync.deletion_window_hours,
        1..=720,
        " hours",
    );
    ui.indent("threshold", |ui| {
        note(ui, &policy::threshold_sentence(sync, managed));
        if sync.deletion_threshold == 0 || sync.deletion_threshold_percent == 0 {
            note(
                ui,
                "With 0, every deletion, disable and release waits for your approval.",
            );
        }
    });
}
