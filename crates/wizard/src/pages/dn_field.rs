//! A DN field that helps as you type: the normalised DN in both forms, what normalising
//! changed, or where the DN is wrong. Shared by the Root User container and the sync group.
//! What it says sits in a space of its own height, so nothing below moves as the DN is typed.

use crate::widgets::{self, field_error_line};
use ad_sync_core::dn::{Dn, Parsed};
use egui::{RichText, Ui};

/// Draws the field and its live parse; `Some` when the DN is valid.
pub fn ui(ui: &mut Ui, label: &str, value: &mut String, hint: &str) -> Option<Dn> {
    let field = widgets::text_field(ui, label, value, hint);
    let complain = widgets::may_complain(ui, &field);
    widgets::reserved(ui, 3, |ui| {
        let line = |ui: &mut Ui, text: String| {
            ui.add(egui::Label::new(RichText::new(text).monospace()).truncate());
        };
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
                line(ui, format!("Normalised: {}", dn.to_comma_form()));
                line(ui, format!("Semicolon form: {}", dn.to_semicolon_form()));
                if !notes.is_empty() {
                    widgets::note_line(ui, &format!("Changed: {}", notes.join("; ")));
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
