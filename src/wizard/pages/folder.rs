//! Page 2: where the program files go (`install.folder`).

use crate::wizard::State;
use crate::wizard::app::PickTarget;
use crate::wizard::checks::INSTALL_FOLDER;
use crate::wizard::validate::{Job, Outcome, Slot};
use crate::wizard::widgets::{self, Gate, note};
use egui::Ui;
use std::path::PathBuf;

pub fn ui(s: &mut State, ui: &mut Ui) -> Gate {
    ui.label("The agent's program files are installed here. The configuration and its secrets live apart from them.");
    ui.horizontal(|ui| {
        ui.vertical(|ui| {
            widgets::text_field(
                ui,
                "Destination folder",
                &mut s.form.install_dir,
                "/opt/ad-sync",
            )
        });
        if ui
            .add_enabled(!s.picking(), egui::Button::new("Browse…"))
            .clicked()
        {
            s.pick(PickTarget::Folder, ui.ctx());
        }
    });
    if let Some(n) = &s.picker_note {
        note(ui, n);
    }
    s.validator.request(
        Slot::Folder,
        Job::Folder(PathBuf::from(s.form.install_dir.trim())),
    );
    let acks = &mut s.acks;
    widgets::check_view(
        ui,
        &mut s.validator,
        Slot::Folder,
        "the folder",
        |ui, o| match o {
            Outcome::Folder(c) => {
                widgets::report_lines(ui, std::slice::from_ref(c), &[INSTALL_FOLDER], &[], acks)
            }
            _ => Gate::Blocked("unexpected result".into()),
        },
    )
}
