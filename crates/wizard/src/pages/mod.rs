//! One file per page, each with `fn ui(state, ui) -> Gate`: what the page shows, which check it
//! asks for, and whether Next may be pressed. The order and the checks follow DESIGN.md.

pub mod account;
pub mod connect_key;
pub mod connection;
mod dn_field;
pub mod domain_controller;
pub mod finish;
pub mod folder;
pub mod install;
pub mod review;
pub mod root_dn;
pub mod server_type;
pub mod sync;
pub mod welcome;

use super::State;
use super::widgets::Gate;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Welcome,
    Folder,
    ServerType,
    DomainController,
    Connection,
    RootDn,
    Account,
    ConnectKey,
    Sync,
    Review,
    Install,
    Finish,
}

impl Page {
    pub const ALL: [Page; 12] = [
        Page::Welcome,
        Page::Folder,
        Page::ServerType,
        Page::DomainController,
        Page::Connection,
        Page::RootDn,
        Page::Account,
        Page::ConnectKey,
        Page::Sync,
        Page::Review,
        Page::Install,
        Page::Finish,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Page::Welcome => "Welcome",
            Page::Folder => "Destination folder",
            Page::ServerType => "Server type",
            Page::DomainController => "Domain controller",
            Page::Connection => "Connection security",
            Page::RootDn => "Root User container",
            Page::Account => "Service account",
            Page::ConnectKey => "Connect key",
            Page::Sync => "Sync settings",
            Page::Review => "Review",
            Page::Install => "Install",
            Page::Finish => "Finish",
        }
    }

    pub fn index(self) -> usize {
        Page::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }

    pub fn next(self) -> Option<Page> {
        Page::ALL.get(self.index() + 1).copied()
    }

    pub fn back(self) -> Option<Page> {
        self.index()
            .checked_sub(1)
            .and_then(|i| Page::ALL.get(i).copied())
    }

    pub fn ui(self, state: &mut State, ui: &mut egui::Ui) -> Gate {
        match self {
            Page::Welcome => welcome::ui(state, ui),
            Page::Folder => folder::ui(state, ui),
            Page::ServerType => server_type::ui(state, ui),
            Page::DomainController => domain_controller::ui(state, ui),
            Page::Connection => connection::ui(state, ui),
            Page::RootDn => root_dn::ui(state, ui),
            Page::Account => account::ui(state, ui),
            Page::ConnectKey => connect_key::ui(state, ui),
            Page::Sync => sync::ui(state, ui),
            Page::Review => review::ui(state, ui),
            Page::Install => install::ui(state, ui),
            Page::Finish => finish::ui(state, ui),
        }
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
