//! Page 9: the sync group, picked from the security groups under the Root User container or
//! typed (`dn.sync_group`, `sync_group.exists`, `sync_group.is_security_group`,
//! `sync_group.not_privileged`, `domain.tier0`). Distribution, built-in and protected groups
//! are listed but cannot be picked, each saying why. The policies are the next page.

use crate::state::State;
use crate::validate::Slot;
use crate::widgets::{Gate, field_error, note};
use ad_sync_core::directory::browse::Offer;
use ad_sync_core::dn::Dn;
use ad_sync_core::preflight::{Scope, ids};
use egui::Ui;

pub fn ui(s: &mut State, ui: &mut Ui) -> Gate {
    ui.label("Groups from the cloud are created as security groups nested in this group. Pick it from the groups under the Root User container, or type its DN.");
    let dn = super::dn_field::ui(
        ui,
        "Sync group",
        &mut s.form.sync_group_dn,
        "CN=Cloud Groups;CN=Users;DC=example;DC=com",
    );
    let password = !s.form.password.is_empty();
    match Dn::parse_container(s.form.root_user_dn.trim()) {
        Ok(root) if password => {
            let start = root.dn.to_comma_form();
            if s.trees.group.start.as_deref() != Some(start.as_str()) {
                s.trees.group = crate::tree::Tree::new(Offer::Groups);
                s.trees.group.start = Some(start);
            }
            let answers = s.form.to_answers();
            let picked = s
                .trees
                .group
                .ui(ui, &mut s.validator, &answers, dn.as_slice(), "groups");
            if let Some(chosen) = picked.dn {
                s.form.sync_group_dn = chosen;
            }
        }
        _ => note(
            ui,
            "The groups under the Root User container are listed here once it and the service account's password are set.",
        ),
    }
    ui.separator();
    if dn.is_none() && s.form.sync_group_dn.trim().is_empty() && !s.form.sync.direction.to_ad() {
        // Chosen on the next page: with AD as the only source nothing is written to AD.
        note(
            ui,
            "Not needed: with users travelling only from AD to the cloud (Sync policies), no group is written to AD.",
        );
        return Gate::Ready;
    }
    if dn.is_none() {
        return Gate::Blocked("the sync group is not a valid DN".into());
    }
    if !password {
        field_error(
            ui,
            "The service account's password is needed to look the group up",
            "Go back to Service account and type it.",
        );
        return Gate::Blocked("the service account's password is missing".into());
    }
    super::preflight_checks(
        s,
        ui,
        Slot::Sync,
        Scope::Directory,
        None,
        "the sync group",
        &[
            ids::DN_SYNC_GROUP,
            ids::SYNC_GROUP_EXISTS,
            ids::SYNC_GROUP_IS_SECURITY_GROUP,
            ids::SYNC_GROUP_NOT_PRIVILEGED,
            ids::DOMAIN_TIER0,
        ],
        &[ids::LDAP_BIND],
        |_, _| {},
    )
}
