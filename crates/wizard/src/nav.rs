//! Where the administrator is in the wizard: the pages in order, and what a page asks of the
//! window once drawn (whether Next may be pressed, and where to go). Only the window (`app`)
//! changes the page; a page says where it wants to go.

use crate::widgets::Gate;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Welcome,
    Folder,
    ServerType,
    DomainController,
    Connection,
    Account,
    RootDn,
    ConnectKey,
    Sync,
    Policies,
    Review,
    Install,
    Finish,
}

impl Page {
    pub const ALL: [Page; 13] = [
        Page::Welcome,
        Page::Folder,
        Page::ServerType,
        Page::DomainController,
        Page::Connection,
        Page::Account,
        Page::RootDn,
        Page::ConnectKey,
        Page::Sync,
        Page::Policies,
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
            Page::Sync => "Sync group",
            Page::Policies => "Sync policies",
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
}

/// What a page returns: its gate (may Next be pressed, and if not why) and, when the
/// administrator asked for it on the page, the page to go to.
pub struct Shown {
    pub gate: Gate,
    pub go: Option<Page>,
}

impl From<Gate> for Shown {
    fn from(gate: Gate) -> Shown {
        Shown { gate, go: None }
    }
}
