//! Page 9: the sync group, picked from the security groups under the Root User container or
//! typed (`dn.sync_group`, `sync_group.exists`, `sync_group.is_security_group`,
//! `sync_group.not_privileged`), and the policies, each explained in one sentence with its
//! default. Distribution, built-in and protected groups are listed but cannot be picked, each
//! saying why.

use crate::state::State;
use crate::validate::Slot;
use crate::widgets::{Gate, field_error, note};
use ad_sync_core::answers::{GroupDisconnection, MembershipSyncType, UserDisconnection};
use ad_sync_core::directory::browse::Offer;
use ad_sync_core::dn::Dn;
use ad_sync_core::preflight::{Scope, ids};
use egui::{RichText, Ui};

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
                .ui(ui, &mut s.validator, &answers, dn.as_ref(), "groups");
            if let Some(chosen) = picked.dn {
                s.form.sync_group_dn = chosen;
            }
        }
        _ => note(
            ui,
            "The groups under the Root User container are listed here once it and the service account's password are set.",
        ),
    }
    policies(s, ui);
    ui.separator();
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

fn heading(ui: &mut Ui, text: &str) {
    ui.add_space(6.0);
    ui.label(RichText::new(text).strong());
}

fn policies(s: &mut State, ui: &mut Ui) {
    let sync = &mut s.form.sync;
    heading(
        ui,
        "When a user leaves the cloud directory (or is no longer synced)",
    );
    ui.radio_value(
        &mut sync.user_disconnection_action,
        UserDisconnection::Disable,
        "Disable the AD account (default)",
    );
    ui.radio_value(
        &mut sync.user_disconnection_action,
        UserDisconnection::Retain,
        "Retain the AD account as it is",
    );
    ui.radio_value(
        &mut sync.user_disconnection_action,
        UserDisconnection::Remove,
        "Remove the AD account",
    );
    note(
        ui,
        "Disable keeps the account and its history but stops it logging on; remove deletes it for good.",
    );

    heading(ui, "When a group leaves the cloud directory");
    ui.radio_value(
        &mut sync.group_disconnection_action,
        GroupDisconnection::Retain,
        "Retain the AD group (default)",
    );
    ui.radio_value(
        &mut sync.group_disconnection_action,
        GroupDisconnection::Remove,
        "Remove the AD group",
    );
    note(
        ui,
        "Retain leaves the group and its members in AD, no longer updated; remove deletes the group.",
    );

    heading(ui, "When a membership ends in the cloud");
    ui.radio_value(
        &mut sync.membership_disconnection_action,
        GroupDisconnection::Remove,
        "Remove the member from the AD group (default)",
    );
    ui.radio_value(
        &mut sync.membership_disconnection_action,
        GroupDisconnection::Retain,
        "Retain the AD membership",
    );
    note(
        ui,
        "Remove keeps AD memberships equal to the cloud's; retain only ever adds members.",
    );

    heading(ui, "Memberships of nested groups");
    ui.radio_value(
        &mut sync.group_membership_sync_type,
        MembershipSyncType::Minimal,
        "Minimal: only members the cloud added (default)",
    );
    ui.radio_value(
        &mut sync.group_membership_sync_type,
        MembershipSyncType::Match,
        "Match: make AD membership equal the cloud's, removing others",
    );
    note(
        ui,
        "Minimal never removes members added in AD by hand; match does.",
    );

    heading(ui, "Accounts and groups that are already in AD");
    ui.checkbox(
        &mut sync.adopt_existing_users,
        "Take over existing accounts whose name a cloud user has (off by default)",
    );
    note(
        ui,
        "When on, an unmanaged AD account under the Root User container with a cloud user's username is managed from then on (names, enabled state, groups; its password stays until the cloud sets one); when off, it is reported as a collision and left alone.",
    );
    ui.checkbox(
        &mut sync.adopt_existing_groups,
        "Take over existing security groups whose name a cloud group has (off by default)",
    );
    note(
        ui,
        "When on, such a group keeps the members AD gave it and gets the cloud's; protected and privileged accounts and groups (Domain Admins and their members, adminCount=1, built-ins) are never taken over. The Review page shows what the first sync would do.",
    );

    heading(ui, "Account lockout");
    ui.checkbox(
        &mut sync.sync_account_locked_out_status,
        "Sync the cloud's locked-out state to AD (off by default)",
    );
    note(
        ui,
        "When on, a user locked in the cloud is locked in AD and unlocked with it; when off, AD's own lockout stands alone.",
    );
}
