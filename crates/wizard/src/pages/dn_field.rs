//! A DN field that helps as you type: whether the DN is valid and what reading it changed, or
//! where it is wrong. The DN itself is shown once, in the field, as typed or picked. Shared by the Root User container and the sync group.
//! What it says sits in a space of its own height, so nothing below moves as the DN is typed.

use crate::widgets::{self, field_error_line};
use ad_sync_core::dn::{Dn, Parsed};
use egui::Ui;

/// Draws the field and its live parse; `Some` when the DN is valid.
pub fn ui(ui: &mut Ui, label: &str, value: &mut String, hint: &str) -> Option<Dn> {
    let field = widgets::text_field(ui, label, value, hint);
    let complain = widgets::may_complain(ui, &field);
    widgets::reserved(ui, 3, |ui| {
        if value.trim().is_empty() {
            if complain {
                field_error_line(
                    ui,
                    &format!("{label} is empty"),
                    &format!("Type it like {hint} (semicolons or commas), or pick it below."),
                );
            }
            return None;
        }
        match Dn::parse_container(value.trim()) {
            Ok(Parsed { dn, notes, .. }) => {
                // The DN stays as typed or picked; only what reading it changed is said.
                if notes.is_empty() {
                    widgets::note_line(ui, "A valid DN.");
                } else {
                    widgets::note_line(
                        ui,
                        &format!("A valid DN, read with these changes: {}", notes.join("; ")),
                    );
                }
                Some(dn)
            }
            Err(e) => {
                field_error_line(
                    ui,
                    &format!("{label}: {} (at character {})", e.message, e.position),
                    "Write it like CN=Users;DC=example;DC=com: semicolons or commas between parts, CN/OU/DC before each =.",
                );
                None
            }
        }
    })
}
