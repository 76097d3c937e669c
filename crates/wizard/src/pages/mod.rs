//! One file per page, each with `fn ui(state, ui)`: what the page shows, which check it asks
//! for, and whether Next may be pressed (its `Gate`; a page with a button that goes elsewhere
//! returns a `Shown`). The order and the checks follow DESIGN.md; the order is in `nav`.

pub mod account;
pub mod connect_key;
pub mod connection;
mod dn_field;
pub mod domain_controller;
pub mod finish;
pub mod folder;
pub mod install;
pub mod policies;
pub mod review;
pub mod root_dn;
pub mod server_type;
pub mod source;
pub mod sync;
pub mod welcome;

pub use crate::nav::{Page, Shown};
use crate::state::State;
use crate::widgets::Gate;

/// Draws `page` and returns what it asks of the window.
pub fn show(page: Page, state: &mut State, ui: &mut egui::Ui) -> Shown {
    match page {
        Page::Welcome => welcome::ui(state, ui),
        Page::Folder => folder::ui(state, ui).into(),
        Page::ServerType => server_type::ui(state, ui).into(),
        Page::DomainController => domain_controller::ui(state, ui).into(),
        Page::Connection => connection::ui(state, ui).into(),
        Page::RootDn => root_dn::ui(state, ui).into(),
        Page::Account => account::ui(state, ui).into(),
        Page::ConnectKey => connect_key::ui(state, ui).into(),
        Page::Sync => sync::ui(state, ui).into(),
        Page::Policies => policies::ui(state, ui).into(),
        Page::Source => source::ui(state, ui).into(),
        Page::Review => review::ui(state, ui),
        Page::Install => install::ui(state, ui).into(),
        Page::Finish => finish::ui(state, ui).into(),
    }
}

use super::validate::{CertTarget, Job, Outcome, Slot};
use ad_sync_core::directory::cert::CertInfo;
use ad_sync_core::preflight::Scope;

/// Asks for a preflight run of `scope` over the form's answers and shows the checks `ids` (and
/// failures among `context`); `extra` draws more of the finished outcome (the certificate).
#[allow(clippy::too_many_arguments)]
pub(crate) fn preflight_checks(
    s: &mut State,
    ui: &mut egui::Ui,
    slot: Slot,
    scope: Scope,
    certificate: Option<CertTarget>,
    what: &str,
    ids: &[&str],
    context: &[&str],
    extra: impl FnOnce(&mut egui::Ui, Option<&Result<CertInfo, String>>),
) -> Gate {
    let job = Job::Preflight {
        answers: Box::new(s.form.to_answers()),
        scope,
        certificate,
    };
    s.validator.request(slot, job);
    let acks = &mut s.acks;
    super::widgets::check_view(ui, &mut s.validator, slot, what, |ui, o| match o {
        Outcome::Checks {
            report,
            certificate,
        } => {
            extra(ui, certificate.as_ref());
            super::widgets::report_lines(ui, &report.checks, ids, context, acks)
        }
        _ => Gate::Blocked("unexpected result".into()),
    })
}
