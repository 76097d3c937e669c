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
    /// Shown only when the direction has AD as a source (`Page::shown`).
    Source,
    Review,
    Install,
    Finish,
}

impl Page {
    pub const ALL: [Page; 14] = [
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
        Page::Source,
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
            Page::Source => "AD as a source",
            Page::Review => "Review",
            Page::Install => "Install",
            Page::Finish => "Finish",
        }
    }

    /// The pages this setup walks through: AD as a source's page only when the direction has
    /// AD as a source (a cloud-to-AD setup has the 13 pages it always had).
    pub fn shown(from_ad: bool) -> Vec<Page> {
        Page::ALL
            .into_iter()
            .filter(|p| from_ad || *p != Page::Source)
            .collect()
    }

    /// Its place among `pages` (0 when it is not one of them).
    pub fn index_in(self, pages: &[Page]) -> usize {
        pages.iter().position(|p| *p == self).unwrap_or(0)
    }

    pub fn next_in(self, pages: &[Page]) -> Option<Page> {
        pages.get(self.index_in(pages) + 1).copied()
    }

    pub fn back_in(self, pages: &[Page]) -> Option<Page> {
        self.index_in(pages)
            .checked_sub(1)
            .and_then(|i| pages.get(i).copied())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_page_is_walked_only_when_ad_is_a_source() {
        let plain = Page::shown(false);
        assert_eq!(plain.len(), 13);
        assert_eq!(Page::Policies.next_in(&plain), Some(Page::Review));
        assert_eq!(Page::Review.back_in(&plain), Some(Page::Policies));
        let from_ad = Page::shown(true);
        assert_eq!(from_ad.len(), 14);
        assert_eq!(Page::Policies.next_in(&from_ad), Some(Page::Source));
        assert_eq!(Page::Source.next_in(&from_ad), Some(Page::Review));
        assert_eq!(Page::Review.back_in(&from_ad), Some(Page::Source));
        assert_eq!(Page::Review.index_in(&from_ad), 11);
        assert_eq!(Page::Finish.next_in(&from_ad), None);
        assert_eq!(Page::Welcome.back_in(&plain), None);
    }
}
