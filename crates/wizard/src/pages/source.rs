//! AD as a source (shown after the policies when the direction has AD as a source): the scope
//! (containers, security groups counted through nesting, a filter, protected accounts named
//! one by one) and the attribute map, checked against the DC (`source.scope` with the number
//! of users the scope selects, `mapping.attributes`). What is never sent, whatever the scope,
//! is said on the page from `source_scope`'s rules.

use crate::state::State;
use crate::validate::Slot;
use crate::widgets::{FIELD_WIDTH, Gate, field_error, note};
use ad_sync_core::mapping::{Kind, rows};
use ad_sync_core::preflight::{Scope, ids};
use egui::{RichText, Ui};

/// A multi-line field under its label (one DN or name per line).
fn lines_field(ui: &mut Ui, label: &str, value: &mut String, hint: &str) {
    let l = ui.label(label);
    ui.add(
        egui::TextEdit::multiline(value)
            .hint_text(hint)
            .desired_rows(2)
            .desired_width(FIELD_WIDTH),
    )
    .labelled_by(l.id);
}

/// Which of the scope's lists a tree fills.
#[derive(Clone, Copy)]
enum List {
    Containers,
    Groups,
}

/// The directory under a list field: a click (or Space) on a node adds its DN to the list, on
/// one listed takes it out; the listed ones are highlighted and the way to each is opened.
/// Shown once the service account's password is known (the tree reads as that account).
fn picker(s: &mut State, ui: &mut Ui, list: List) {
    if s.form.password.is_empty() {
        return;
    }
    let answers = s.form.to_answers();
    let root = s.form.root_user_dn.trim().to_string();
    let groups_listed = !s.form.source.groups.trim().is_empty();
    let (tree, value, default, label, open) = match list {
        List::Containers => (
            &mut s.trees.source_containers,
            &mut s.form.source.containers,
            Some(root.as_str()),
            "containers to send",
            true,
        ),
        List::Groups => (
            &mut s.trees.source_groups,
            &mut s.form.source.groups,
            None,
            "scope groups",
            groups_listed,
        ),
    };
    let title = match list {
        List::Containers => "Pick containers from the directory",
        List::Groups => "Pick security groups from the directory",
    };
    egui::CollapsingHeader::new(title)
        .default_open(open)
        .show(ui, |ui| {
            note(
                ui,
                "Click one to add it to the list above; click a highlighted one to take it out.",
            );
            let listed = crate::form::listed_dns(value, default);
            let picked = tree.ui(ui, &mut s.validator, &answers, &listed, label);
            if let Some(dn) = picked.dn {
                *value = crate::form::toggle_dn(value, &dn);
            }
        });
}

pub fn ui(s: &mut State, ui: &mut Ui) -> Gate {
    ui.label("Choose which AD users and groups are sent to the cloud (each group with its members), and which AD attribute fills each cloud field. Passwords are never sent. The security groups and the filter below select users; groups are chosen by the containers alone.");
    let root = s.form.root_user_dn.trim().to_string();
    lines_field(
        ui,
        "Containers (one DN per line)",
        &mut s.form.source.containers,
        &format!("{root} (the Root User container, when empty)"),
    );
    picker(s, ui, List::Containers);
    lines_field(
        ui,
        "Only members of these security groups (optional, nested membership counts)",
        &mut s.form.source.groups,
        "CN=Cloud Users;OU=Groups;DC=example;DC=com",
    );
    picker(s, ui, List::Groups);
    let src = &mut s.form.source;
    let l = ui.label("Only users matching this LDAP filter (optional)");
    ui.add(
        egui::TextEdit::singleline(&mut src.filter)
            .hint_text("(department=Sales)")
            .desired_width(FIELD_WIDTH),
    )
    .labelled_by(l.id);
    lines_field(
        ui,
        "Protected accounts to send all the same (sAMAccountNames, one per line)",
        &mut src.named,
        "jsmith-admin",
    );
    note(
        ui,
        "Never sent, whatever the scope: computers, this agent's service account and sync group, krbtgt, built-in accounts and groups, and protected or privileged accounts and groups (adminCount=1, members of admin groups) unless named above. Accounts and groups the agent manages for the cloud are never sent back.",
    );
    let wrong = s.form.to_answers().source_scope(None).err();
    if let Some(e) = &wrong {
        field_error(
            ui,
            e,
            "Write each DN as ADUC's Attribute Editor shows it, and the filter in parentheses.",
        );
    }

    ui.add_space(6.0);
    ui.label(RichText::new("Attribute map").strong());
    note(
        ui,
        "Each cloud field is read from the AD attribute beside it. Type another attribute's name to read it from there, or untick Send to leave the field out.",
    );
    egui::Grid::new("mapping")
        .num_columns(3)
        .spacing([12.0, 4.0])
        .show(ui, |ui| {
            let mut kind = None;
            for r in s.form.mapping_rows.iter_mut() {
                let Some(row) = rows(r.kind).find(|d| d.field == r.field) else {
                    continue;
                };
                if kind != Some(r.kind) {
                    kind = Some(r.kind);
                    ui.label(
                        RichText::new(match r.kind {
                            Kind::Group => "Groups",
                            Kind::Contact => "Contacts",
                            Kind::User => "Users",
                        })
                        .strong(),
                    );
                    ui.end_row();
                }
                // A group's and a contact's rows say so: "Group name" does already.
                let what = crate::form::map_label(r.kind, row.what);
                let l = ui.label(&what);
                ui.add_enabled_ui(r.on, |ui| {
                    ui.add_sized(
                        [200.0, ui.spacing().interact_size.y],
                        egui::TextEdit::singleline(&mut r.attr).hint_text(row.ad),
                    )
                    .labelled_by(l.id);
                });
                let mut send = r.on;
                let label = format!("Send {what}");
                let c = ui.add_enabled(!row.required, egui::Checkbox::new(&mut send, "Send"));
                c.widget_info(|| {
                    egui::WidgetInfo::selected(egui::Role::CheckBox, !row.required, send, &label)
                });
                r.on = send || row.required;
                ui.end_row();
            }
        });
    let map = ad_sync_core::mapping::Mapping::from_config(&s.form.mapping());
    if let Err(e) = &map {
        field_error(
            ui,
            e,
            "Type an AD attribute's name (its lDAPDisplayName), or untick Send.",
        );
    }
    ui.separator();
    if wrong.is_some() {
        return Gate::Blocked("the scope is not valid".into());
    }
    if map.is_err() {
        return Gate::Blocked("the attribute map is not valid".into());
    }
    if s.form.password.is_empty() {
        field_error(
            ui,
            "The service account's password is needed to read the scope",
            "Go back to Service account and type it.",
        );
        return Gate::Blocked("the service account's password is missing".into());
    }
    super::preflight_checks(
        s,
        ui,
        Slot::Source,
        Scope::Source,
        None,
        "the scope and the attribute map",
        &ids::SOURCE,
        &[],
        |_, _| {},
    )
}
