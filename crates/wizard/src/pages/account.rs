//! Page 6: the service account, logged on for real (`ldap.bind`), refused when privileged,
//! warned about when its password expires. It comes before the Root User container, so that
//! page can read the directory as this account. On an upgrade it must be the installed account.

use crate::state::PasswordSource;
use crate::state::State;
use crate::validate::Slot;
use crate::widgets::{self, Gate, check_line, field_error, field_error_line, note};
use ad_sync_core::install::checks;
use ad_sync_core::preflight::{Scope, ids};
use egui::Ui;

pub const IDS: [&str; 7] = [
    ids::LDAP_BIND,
    ids::ACCOUNT_NAME,
    ids::ACCOUNT_NOT_PRIVILEGED,
    ids::ACCOUNT_ADMINCOUNT,
    ids::ACCOUNT_ENABLED,
    ids::ACCOUNT_PASSWORD_EXPIRY,
    ids::PASSWORD_POLICY,
];

pub const CONTEXT: [&str; 5] = [
    ids::DC_RESOLVE,
    ids::DC_REACHABLE,
    ids::LDAP_TLS,
    ids::LDAP_FALLBACK,
    ids::DC_WRITABLE,
];

pub fn ui(s: &mut State, ui: &mut Ui) -> Gate {
    ui.label("The account the agent logs on as. It must not be an administrator: give it control over the Root User container only (Delegate Control).");
    let field = widgets::text_field(
        ui,
        "Service account",
        &mut s.form.username,
        r"EXAMPLE\svc-sync, svc-sync@example.com or svc-sync",
    );
    let complain = widgets::may_complain(ui, &field);
    let mut local = Gate::Ready;
    widgets::reserved(ui, 2, |ui| {
        if s.form.username.trim().is_empty() {
            if complain {
                field_error_line(
                    ui,
                    "Service account is empty",
                    r"Type it as DOMAIN\user, user@example.com or user.",
                );
            }
            local = Gate::Blocked("type the service account".into());
        }
    });
    if !s.form.username.trim().is_empty() {
        local = local.and(unchanged(s, ui));
    }
    let typing = password(s, ui).has_focus();
    if s.form.password.is_empty() {
        local = local.and(Gate::Blocked("type the password".into()));
    }
    if !local.is_ready() {
        return local;
    }
    if typing {
        // A logon with a half-typed password counts against AD's lockout threshold.
        note(
            ui,
            "The logon is tried when you leave the password field (press Enter or Tab).",
        );
        return Gate::Blocked("leave the password field to log on".into());
    }
    ui.separator();
    let gate = super::preflight_checks(
        s,
        ui,
        Slot::Account,
        Scope::Directory,
        None,
        "the service account",
        &IDS,
        &CONTEXT,
        |_, _| {},
    );
    if gate.is_ready() {
        // Logged on: the next page's tree can be read now, so it is there when the page is.
        let answers = s.form.to_answers();
        s.trees.root.prefetch(&mut s.validator, &answers);
    }
    gate
}

/// On an upgrade the service account stays the installed one (`account.unchanged`); shown
/// only when it does not.
pub fn unchanged(s: &State, ui: &mut Ui) -> Gate {
    let Some(installed) = s.installed() else {
        return Gate::Ready;
    };
    let same =
        checks::account_unchanged(&installed.service_account.username, s.form.username.trim());
    if same.status == ad_sync_core::preflight::Status::Pass {
        return Gate::Ready;
    }
    check_line(ui, &same);
    Gate::Blocked("the service account must stay the installed one".into())
}

/// The password field, and in review mode where the password came from.
pub fn password(s: &mut State, ui: &mut Ui) -> egui::Response {
    match &s.setup.password_source {
        PasswordSource::Store(store) => note(
            ui,
            &format!("The password was read from the secret store ({store})."),
        ),
        PasswordSource::StoreFailed(why) => field_error(
            ui,
            &format!("The stored password could not be read: {why}"),
            "Type the service account's password below.",
        ),
        PasswordSource::Reading => note(ui, "Reading the stored password…"),
        PasswordSource::Typed => {}
    }
    let before = s.form.password.len();
    let response = widgets::secret_field(
        ui,
        widgets::PASSWORD_FIELD,
        &mut s.form.password,
        "the service account's password",
    );
    if s.form.password.len() != before
        && matches!(s.setup.password_source, PasswordSource::Store(_))
    {
        s.setup.password_source = PasswordSource::Typed;
    }
    if s.form.password.is_empty() {
        note(
            ui,
            "The password is kept in memory only while the wizard runs; the install step stores it in the secret store.",
        );
    }
    response
}
