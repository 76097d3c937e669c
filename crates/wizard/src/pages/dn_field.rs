//! A DN field that helps as you type: the normalised DN in both forms, what normalising
//! changed, or where the DN is wrong. Shared by the Root User container and the sync group.

use crate::widgets::{self, field_error, note};
use ad_sync_core::dn::{Dn, Parsed};
use egui::{RichText, Ui};

/// Draws the field and its live parse; `Some` when the DN is valid.
pub fn ui(ui: &mut Ui, label: &str, value: &mut String, hint: &str) -> Option<Dn> {
    widgets::text_field(ui, label, value, hint);
    if value.trim().is_empty() {
        field_error(
            ui,
            &format!("{label} is empty"),
            &format!("Type it like {hint} (semicolons or commas)."),
        );
        return None;
    }
    match Dn::parse_container(value.trim()) {
        Ok(Parsed { dn, notes, .. }) => {
            ui.label(RichText::new(format!("Normalised: {}", dn.to_comma_form())).monospace());
            ui.label(
                RichText::new(format!("Semicolon form: {}", dn.to_semicolon_form())).monospace(),
            );
            for n in &notes {
                note(ui, &format!("Changed: {n}"));
            }
            Some(dn)
        }
        Err(e) => {
            field_error(
                ui,
                &format!("{label}: {} (at character {})", e.message, e.position),
                "Write it like CN=Users;DC=example;DC=com: semicolons or commas between parts, CN/OU/DC before each =.",
            );
            None
        }
    }
}
