//! Page 2: where the program files go (`install.folder`).

use crate::state::PickTarget;
use crate::state::State;
use crate::validate::{Job, Outcome, Slot};
use crate::widgets::{self, Gate};
use ad_sync_core::preflight::ids::INSTALL_FOLDER;
use egui::Ui;
use std::path::PathBuf;

pub fn ui(s: &mut State, ui: &mut Ui) -> Gate {
    ui.label("The agent's program files are installed here. The configuration and its secrets live apart from them.");
    s.path_field(
        ui,
        PickTarget::Folder,
        "Destination folder",
        "/opt/ad-sync",
        "Browse…",
    );
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
