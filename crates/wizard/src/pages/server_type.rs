//! Page 3: is this host the domain controller, or a member server that connects to one?

use crate::state::State;
use crate::widgets::{Gate, note};
use ad_sync_core::answers::ServerType;
use egui::Ui;

pub fn ui(s: &mut State, ui: &mut Ui) -> Gate {
    ui.label("Where does the agent run?");
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    ui.radio_value(
        &mut s.form.server_type,
        ServerType::Dc,
        "Domain controller (this host)",
    );
    ui.indent("dc-note", |ui| {
        note(
            ui,
            &format!("The agent connects to this host, {host}, by its own name."),
        )
    });
    ui.radio_value(&mut s.form.server_type, ServerType::Member, "Member server");
    ui.indent("member-note", |ui| {
        note(
            ui,
            "The agent connects to a domain controller you name on the next page.",
        )
    });
    Gate::Ready
}
