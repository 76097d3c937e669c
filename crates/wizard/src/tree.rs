//! The directory picker: a tree of the domain's OUs and containers (and, for the sync group,
//! its groups), read from the live DC one level at a time as the administrator opens it.
//!
//! - Each level is a job of the validator (its own slot, keyed by what it reads), so it runs
//!   off the UI thread with a time limit, shows a spinner, and can be cancelled and retried like
//!   any check; the read itself is `preflight::browse`, the checks' own connection and logon.
//! - The filter box narrows every open level by name on the server (for domains with thousands
//!   of OUs); a level lists at most `LEVEL_LIMIT` children until "Show more" is pressed.
//! - Only the rows in view are laid out (`ScrollArea::show_rows`), so a level of thousands
//!   draws as fast as one of ten; the tree keeps a fixed height, so nothing below it moves
//!   while levels load.

use crate::validate::{Job, Outcome, Slot, Validator, View};
use crate::widgets;
use ad_sync_core::answers::Answers;
use ad_sync_core::directory::browse::{Kind, LEVEL_LIMIT, Level, Node, Offer};
use ad_sync_core::dn::Dn;
use egui::{RichText, Ui};
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

/// Rows in view at once.
const VISIBLE_ROWS: f32 = 9.0;

/// One picker's state: what is open, the filter, and how much of each level is asked for.
pub struct Tree {
    pub offer: Offer,
    /// The container the tree starts at (`None`: the domain's naming context).
    pub start: Option<String>,
    expanded: HashSet<String>,
    limits: HashMap<String, usize>,
    pub filter: String,
    /// The DNs whose ancestors were opened to show them (once per value).
    revealed: HashSet<String>,
    /// The node an arrow key moved to: its row takes the keyboard focus when next drawn.
    focus: Option<String>,
    /// The rows in view in the last frame (to scroll a node moved to into view).
    visible: std::ops::Range<usize>,
    /// Several nodes can be chosen (a list field): a click, Space or Enter chooses or unchooses
    /// a node, and the arrow keys only move (as in a Windows list with several selections,
    /// where moving never changes the selection).
    multi: bool,
}

/// A node the keyboard can reach, in the order the tree shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NavItem {
    pub row: usize,
    pub dn: String,
    pub depth: usize,
    pub container: bool,
    pub open: bool,
    pub pickable: bool,
}

/// What an arrow key does in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// Pick the item at this index (and move the focus to it).
    Pick(usize),
    /// Open or close the container at this index.
    Toggle(usize),
    Stay,
}

/// What `key` does on the item at `at`, as Windows' tree view does it: Up and Down move to the
/// previous and next node (and pick it, as the selection follows there), Home and End to the
/// first and last; Right opens a closed container, or moves into an open one; Left closes an
/// open container, or moves to the node's parent. Nodes that cannot be picked are passed over
/// by Up and Down, and opened or closed where they are.
pub fn arrow(items: &[NavItem], at: usize, key: egui::Key) -> Nav {
    use egui::Key;
    let Some(here) = items.get(at) else {
        return Nav::Stay;
    };
    let pick = |i: Option<usize>| i.map_or(Nav::Stay, Nav::Pick);
    let pickable = |i: &usize| items[*i].pickable;
    match key {
        Key::ArrowDown => pick((at + 1..items.len()).find(pickable)),
        Key::ArrowUp => pick((0..at).rev().find(pickable)),
        Key::Home => pick((0..items.len()).find(pickable)),
        Key::End => pick((0..items.len()).rev().find(pickable)),
        Key::ArrowRight if here.container && !here.open => Nav::Toggle(at),
        Key::ArrowRight if here.container => pick(
            items
                .get(at + 1)
                .filter(|c| c.depth == here.depth + 1 && c.pickable)
                .map(|_| at + 1),
        ),
        Key::ArrowLeft if here.container && here.open => Nav::Toggle(at),
        Key::ArrowLeft => pick(
            (0..at)
                .rev()
                .find(|i| items[*i].depth < here.depth)
                .filter(pickable),
        ),
        _ => Nav::Stay,
    }
}

/// The keys the tree answers.
const ARROWS: [egui::Key; 6] = [
    egui::Key::ArrowDown,
    egui::Key::ArrowUp,
    egui::Key::ArrowLeft,
    egui::Key::ArrowRight,
    egui::Key::Home,
    egui::Key::End,
];

/// What the tree asks of its page after a frame.
#[derive(Default)]
pub struct Picked {
    /// The DN chosen (comma form).
    pub dn: Option<String>,
}

enum Row {
    Top,
    Node {
        depth: usize,
        slot: Slot,
        index: usize,
    },
    Loading {
        depth: usize,
        slot: Slot,
    },
    Failed {
        depth: usize,
        slot: Slot,
    },
    Empty {
        depth: usize,
    },
    More {
        depth: usize,
        base: Option<String>,
        slot: Slot,
        shown: usize,
    },
}

/// What a level's read depends on: the DC, the connection and the account (and, on a DC
/// install, the domain, which completes this host's name). Picking a container, typing a DN,
/// changing a policy or the scope the trees fill must not read the tree again. Every field is
/// named, none taken over by default: a new section of the answers is left out here unless
/// it is added on purpose (the scope once was taken over, and each pick read the tree again).
fn reader(answers: &Answers) -> Answers {
    let root_user_dn = if answers.server.dc_host.is_some() {
        String::new()
    } else {
        // A DC install connects to this host, whose short name the domain completes.
        Dn::parse(&answers.directory.root_user_dn)
            .ok()
            .and_then(|p| p.dn.domain_dn())
            .map(|d| d.to_comma_form())
            .unwrap_or_default()
    };
    Answers {
        version: answers.version,
        server: answers.server.clone(),
        ldap: answers.ldap.clone(),
        directory: ad_sync_core::answers::Directory {
            root_user_dn,
            sync_group_dn: None,
        },
        service_account: answers.service_account.clone(),
        cloud: None,
        sync: Default::default(),
        source: None,
        mapping: Default::default(),
        install: None,
        base_dir: answers.base_dir.clone(),
    }
}

fn key(dn: &str) -> String {
    dn.to_lowercase()
}

impl Tree {
    pub fn new(offer: Offer) -> Tree {
        Tree {
            offer,
            start: None,
            expanded: HashSet::new(),
            limits: HashMap::new(),
            filter: String::new(),
            revealed: HashSet::new(),
            focus: None,
            visible: 0..0,
            multi: false,
        }
    }

    /// A tree from which several nodes are chosen (`multi`).
    pub fn multi(offer: Offer) -> Tree {
        Tree {
            multi: true,
            ..Tree::new(offer)
        }
    }

    /// The slot of the level under `base`.
    fn slot(&self, base: Option<&str>) -> Slot {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.offer.hash(&mut h);
        base.map(key).hash(&mut h);
        Slot::Level(h.finish())
    }

    fn limit(&self, base: Option<&str>) -> usize {
        self.limits
            .get(&base.map(key).unwrap_or_default())
            .copied()
            .unwrap_or(LEVEL_LIMIT)
    }

    fn request(&self, v: &mut Validator, answers: &Answers, base: Option<&str>) -> Slot {
        let slot = self.slot(base);
        v.request(
            slot,
            Job::Level {
                answers: Box::new(reader(answers)),
                base: base.map(str::to_string),
                offer: self.offer,
                name: self.filter.trim().to_string(),
                limit: self.limit(base),
            },
        );
        slot
    }

    /// Starts reading the first level before its page opens (the page before it logged on),
    /// so the tree is there when the page is.
    pub fn prefetch(&self, v: &mut Validator, answers: &Answers) {
        self.request(v, answers, self.start.as_deref());
    }

    /// Whether the first level, and every level opened, has been read (the bench's marks).
    pub fn loaded(&self, v: &Validator) -> (bool, bool) {
        let done = |slot| matches!(v.view(slot), View::Done(Outcome::Level(Ok(_))));
        let top = done(self.slot(self.start.as_deref()));
        let open = top && self.expanded.iter().all(|k| done(self.slot(Some(k))));
        (top, open)
    }

    /// Opens every container between the start and `dn`, so a value already in the field shows
    /// in the tree.
    fn reveal(&mut self, dn: &str, top: &str) {
        if !self.revealed.insert(key(dn)) {
            return;
        }
        let (Ok(target), Ok(top)) = (Dn::parse(dn), Dn::parse(top)) else {
            return;
        };
        let mut at = target.dn.parent();
        while let Some(p) = at {
            if !p.ends_with(&top.dn) || p.same_as(&top.dn) {
                break;
            }
            self.expanded.insert(key(&p.to_comma_form()));
            at = p.parent();
        }
    }

    fn walk(
        &self,
        v: &mut Validator,
        answers: &Answers,
        base: Option<&str>,
        depth: usize,
        rows: &mut Vec<Row>,
    ) {
        let slot = self.request(v, answers, base);
        // What this level shows, taken out first: opening a child asks the validator again.
        let (children, more) = match v.view(slot) {
            View::Waiting | View::Running { .. } => {
                rows.push(Row::Loading { depth, slot });
                return;
            }
            View::Done(Outcome::Level(Ok(level))) => {
                let children: Vec<(usize, Option<String>)> = level
                    .nodes
                    .iter()
                    .enumerate()
                    .map(|(index, n)| {
                        let open = n.kind.is_container() && self.expanded.contains(&key(&n.dn));
                        (index, open.then(|| n.dn.clone()))
                    })
                    .collect();
                (children, level.more)
            }
            View::Done(_) => {
                rows.push(Row::Failed { depth, slot });
                return;
            }
        };
        if children.is_empty() {
            rows.push(Row::Empty { depth });
        }
        let shown = children.len();
        for (index, open) in children {
            rows.push(Row::Node { depth, slot, index });
            if let Some(dn) = open {
                self.walk(v, answers, Some(&dn), depth + 1, rows);
            }
        }
        if more {
            rows.push(Row::More {
                depth,
                base: base.map(str::to_string),
                slot,
                shown,
            });
        }
    }

    /// The nodes of `rows` the keyboard reaches, in order.
    fn nav(&self, v: &Validator, rows: &[Row]) -> Vec<NavItem> {
        rows.iter()
            .enumerate()
            .filter_map(|(row, r)| match r {
                Row::Node { depth, slot, index } => match v.view(*slot) {
                    View::Done(Outcome::Level(Ok(level))) => {
                        level.nodes.get(*index).map(|n| NavItem {
                            row,
                            dn: n.dn.clone(),
                            depth: *depth,
                            container: n.kind.is_container(),
                            open: self.expanded.contains(&key(&n.dn)),
                            pickable: n.unpickable.is_none(),
                        })
                    }
                    _ => None,
                },
                Row::Top => self.top(v).map(|l| NavItem {
                    row,
                    dn: l.base.clone(),
                    depth: 0,
                    container: false,
                    open: true,
                    pickable: !self.groups(),
                }),
                _ => None,
            })
            .collect()
    }

    /// The first level, once read.
    pub fn top<'v>(&self, v: &'v Validator) -> Option<&'v Level> {
        match v.view(self.slot(self.start.as_deref())) {
            View::Done(Outcome::Level(Ok(level))) => Some(level),
            _ => None,
        }
    }

    /// Whether it offers groups (the level above them cannot be picked).
    fn groups(&self) -> bool {
        matches!(self.offer, Offer::Groups | Offer::ScopeGroups)
    }

    /// Draws the filter box and the tree; `selected` are the field's current DNs (highlighted,
    /// and the way to each opened). `label` names the tree for screen readers and tests.
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        v: &mut Validator,
        answers: &Answers,
        selected: &[Dn],
        label: &str,
    ) -> Picked {
        let mut out = Picked::default();
        widgets::text_field(
            ui,
            &format!("Filter {label} by name"),
            &mut self.filter,
            "part of a name (read from the DC)",
        );
        let start = self.start.clone();
        // Open the way to the field's value before this frame's levels are asked for.
        if let Some(base) = self.top(v).map(|l| l.base.clone()) {
            for sel in selected {
                self.reveal(&sel.to_comma_form(), &base);
            }
        }
        let mut rows = vec![Row::Top];
        self.walk(v, answers, start.as_deref(), 1, &mut rows);
        let row_h = ui.spacing().interact_size.y;
        let spacing = ui.spacing().item_spacing.y;
        let height = VISIBLE_ROWS * (row_h + spacing);
        let mut actions = Vec::new();
        let nav = self.nav(v, &rows);
        // A node an arrow key moved to, outside the rows in view: scroll it to the middle.
        let scroll_to = self
            .focus
            .as_ref()
            .and_then(|dn| nav.iter().find(|n| key(&n.dn) == key(dn)))
            .map(|n| n.row)
            .filter(|r| !self.visible.contains(r));
        let mut visible = self.visible.clone();
        egui::Frame::group(ui.style()).show(ui, |ui| {
            let mut area = egui::ScrollArea::vertical()
                .id_salt(("tree", label))
                .auto_shrink([false, false])
                .min_scrolled_height(height)
                .max_height(height);
            if let Some(r) = scroll_to {
                let first = r.saturating_sub((VISIBLE_ROWS / 2.0) as usize);
                area = area.vertical_scroll_offset(first as f32 * (row_h + spacing));
            }
            area.show_rows(ui, row_h, rows.len(), |ui, range| {
                visible = range.clone();
                for row in &rows[range] {
                    ui.horizontal(|ui| {
                        ui.set_height(row_h);
                        self.row(ui, v, row, selected, &mut actions);
                    });
                }
            });
        });
        self.visible = visible;
        if !actions.is_empty() {
            // The field above the tree was drawn before the pick: draw again to show it.
            ui.ctx().request_repaint();
        }
        for a in actions {
            match a {
                Action::Key(dn, k) => {
                    let Some(at) = nav.iter().position(|n| n.dn == dn) else {
                        continue;
                    };
                    match arrow(&nav, at, k) {
                        Nav::Pick(i) => {
                            if !self.multi {
                                out.dn = Some(nav[i].dn.clone());
                            }
                            self.focus = Some(nav[i].dn.clone());
                        }
                        Nav::Toggle(i) => {
                            let k = key(&nav[i].dn);
                            if !self.expanded.remove(&k) {
                                self.expanded.insert(k);
                            }
                            // Egui may have moved the focus with the arrow: keep it here.
                            self.focus = Some(nav[i].dn.clone());
                        }
                        Nav::Stay => self.focus = Some(dn),
                    }
                    ui.ctx().request_repaint();
                }
                Action::Focused => self.focus = None,
                Action::Pick(dn) => out.dn = Some(dn),
                Action::Toggle(dn) => {
                    if !self.expanded.remove(&key(&dn)) {
                        self.expanded.insert(key(&dn));
                    }
                }
                Action::More(base, slot) => {
                    let k = base.as_deref().map(key).unwrap_or_default();
                    let next = self.limit(base.as_deref()) + LEVEL_LIMIT;
                    self.limits.insert(k, next);
                    v.retry(slot);
                }
                Action::Retry(slot) => v.retry(slot),
                Action::Cancel(slot) => v.cancel(slot),
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn row(
        &self,
        ui: &mut Ui,
        v: &Validator,
        row: &Row,
        selected: &[Dn],
        actions: &mut Vec<Action>,
    ) {
        let indent = |ui: &mut Ui, depth: usize| ui.add_space(18.0 * depth as f32);
        match row {
            Row::Top => match self.top(v) {
                Some(level) => {
                    let name = Dn::parse(&level.base)
                        .ok()
                        .and_then(|p| {
                            if self.start.is_none() {
                                p.dn.domain()
                            } else {
                                p.dn.first_value().map(str::to_string)
                            }
                        })
                        .unwrap_or_else(|| level.base.clone());
                    let node = Node {
                        dn: level.base.clone(),
                        name,
                        kind: match Dn::parse(&level.base) {
                            _ if self.start.is_none() => Kind::Domain,
                            Ok(p) if p.dn.rdns().first().is_some_and(|r| r.attr == "OU") => {
                                Kind::OrganizationalUnit
                            }
                            _ => Kind::Container,
                        },
                        unpickable: self
                            .groups()
                            .then(|| "the container the groups are listed from".to_string()),
                    };
                    self.node_row(ui, &node, None, selected, actions);
                }
                None => {
                    ui.label(RichText::new("The directory").weak());
                }
            },
            Row::Node { depth, slot, index } => {
                indent(ui, *depth);
                if let View::Done(Outcome::Level(Ok(level))) = v.view(*slot)
                    && let Some(n) = level.nodes.get(*index)
                {
                    let open = self.expanded.contains(&key(&n.dn));
                    self.node_row(ui, n, Some(open), selected, actions);
                }
            }
            Row::Loading { depth, slot } => {
                indent(ui, *depth);
                ui.spinner();
                ui.label(RichText::new("Reading…").weak());
                if ui.small_button("Cancel reading").clicked() {
                    actions.push(Action::Cancel(*slot));
                }
            }
            Row::Failed { depth, slot } => {
                indent(ui, *depth);
                if ui.small_button("Retry").clicked() {
                    actions.push(Action::Retry(*slot));
                }
                let text = match v.view(*slot) {
                    View::Done(Outcome::Level(Err(e))) => e.clone(),
                    View::Done(Outcome::Cancelled) => "Reading was cancelled.".into(),
                    View::Done(Outcome::TimedOut(d)) => format!(
                        "The DC did not list this container within {} s.",
                        d.as_secs()
                    ),
                    _ => "This container could not be read.".into(),
                };
                ui.add(
                    egui::Label::new(RichText::new(text).color(widgets::status_color(
                        ui,
                        ad_sync_core::preflight::Status::Fail,
                    )))
                    .truncate(),
                );
            }
            Row::Empty { depth } => {
                indent(ui, *depth);
                let what = match (self.offer, self.filter.trim().is_empty()) {
                    (Offer::Containers, true) => "(no OUs or containers here)",
                    (Offer::Groups | Offer::ScopeGroups, true) => "(no groups or containers here)",
                    (_, false) => "(nothing here matches the filter)",
                };
                ui.label(RichText::new(what).weak());
            }
            Row::More {
                depth,
                base,
                slot,
                shown,
            } => {
                indent(ui, *depth);
                if ui
                    .small_button(format!("Show more ({shown} shown)"))
                    .on_hover_text("Or type part of a name in the filter box above.")
                    .clicked()
                {
                    actions.push(Action::More(base.clone(), *slot));
                }
            }
        }
    }

    fn node_row(
        &self,
        ui: &mut Ui,
        n: &Node,
        open: Option<bool>,
        selected: &[Dn],
        actions: &mut Vec<Action>,
    ) {
        match open {
            Some(open) if n.kind.is_container() => {
                let r = ui.add(egui::Button::new(if open { "-" } else { "+" }).small());
                let verb = if open { "Collapse" } else { "Expand" };
                let name = format!("{verb} {}", n.name);
                r.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, name.clone()));
                if r.clicked() {
                    actions.push(Action::Toggle(n.dn.clone()));
                }
            }
            Some(_) => {
                ui.add_space(ui.spacing().interact_size.y);
            }
            None => {}
        }
        let is_selected = Dn::parse(&n.dn).is_ok_and(|p| selected.iter().any(|s| p.dn.same_as(s)));
        let pick = ui.add_enabled(
            n.unpickable.is_none(),
            egui::Button::selectable(is_selected, n.name.as_str()),
        );
        if pick.clicked() {
            actions.push(Action::Pick(n.dn.clone()));
        }
        if self.focus.as_deref().is_some_and(|f| key(f) == key(&n.dn)) {
            pick.request_focus();
            actions.push(Action::Focused);
        } else if pick.has_focus()
            && let Some(k) = ui.input_mut(|i| {
                ARROWS
                    .into_iter()
                    .find(|k| i.consume_key(egui::Modifiers::NONE, *k))
            })
        {
            actions.push(Action::Key(n.dn.clone(), k));
        }
        let kind = match n.kind {
            Kind::OrganizationalUnit => "OU".to_string(),
            k => k.words().to_string(),
        };
        match &n.unpickable {
            // Why it cannot be chosen is on the row (cut at the tree's edge) and whole on hover.
            Some(why) if matches!(n.kind, Kind::Group { .. }) => {
                pick.on_disabled_hover_text(why);
                ui.add(egui::Label::new(RichText::new(why.as_str()).weak().small()).truncate());
            }
            _ => {
                ui.add(egui::Label::new(RichText::new(kind).weak().small()).truncate());
            }
        }
    }
}

enum Action {
    /// An arrow key on the node with this DN, which had the focus.
    Key(String, egui::Key),
    /// The node moved to took the focus.
    Focused,
    Pick(String),
    Toggle(String),
    More(Option<String>, Slot),
    Retry(Slot),
    Cancel(Slot),
}

#[cfg(test)]
mod reads {
    use super::*;

    /// What a level is read with does not change with what the trees fill or the pages after
    /// them set: picking a scope container must not read the tree again (it did, once).
    #[test]
    fn a_level_is_read_with_the_connection_and_the_account_only() {
        let form = crate::form::Form {
            dc_host: "dc1.example.com".into(),
            root_user_dn: "OU=Staff;DC=example;DC=com".into(),
            ..Default::default()
        };
        let before = form.to_answers();
        let mut changed = form.clone();
        changed.root_user_dn = "CN=Users;DC=example;DC=com".into();
        changed.sync_group_dn = "CN=G;CN=Users;DC=example;DC=com".into();
        changed.source.containers = "OU=Staff;DC=example;DC=com".into();
        changed.source.groups = "CN=Cloud Users;OU=Staff;DC=example;DC=com".into();
        changed.sync.direction = ad_sync_core::answers::Direction::AdToCloud;
        let after = changed.to_answers();
        assert!(after.source.is_some(), "the scope is in the answers");
        assert_eq!(
            format!("{:?}", reader(&before)),
            format!("{:?}", reader(&after))
        );
        // The account it reads as does change it.
        let mut other = form.clone();
        other.username = r"EXAMPLE\someone".into();
        assert_ne!(
            format!("{:?}", reader(&before)),
            format!("{:?}", reader(&other.to_answers()))
        );
    }
}

#[cfg(test)]
mod keyboard {
    use super::*;
    use egui::Key;

    /// The tree as the Root User container's page shows it with Staff open:
    /// the domain; Computers; Staff (open) with Contractors (closed) and a group that cannot be
    /// picked; Users.
    fn shown() -> Vec<NavItem> {
        let item = |row, dn: &str, depth, container, open, pickable| NavItem {
            row,
            dn: dn.into(),
            depth,
            container,
            open,
            pickable,
        };
        vec![
            item(0, "DC=example,DC=com", 0, false, true, true),
            item(1, "CN=Computers,DC=example,DC=com", 1, true, false, true),
            item(2, "OU=Staff,DC=example,DC=com", 1, true, true, true),
            item(
                3,
                "OU=Contractors,OU=Staff,DC=example,DC=com",
                2,
                true,
                false,
                true,
            ),
            item(
                4,
                "CN=Mailing List,OU=Staff,DC=example,DC=com",
                2,
                false,
                false,
                false,
            ),
            item(5, "CN=Users,DC=example,DC=com", 1, true, false, true),
        ]
    }

    #[test]
    fn arrows_move_open_and_close_as_windows_tree_view_does() {
        let t = shown();
        let table = [
            // (at, key, what happens)
            (0, Key::ArrowDown, Nav::Pick(1)),
            (1, Key::ArrowUp, Nav::Pick(0)),
            (0, Key::ArrowUp, Nav::Stay),
            (3, Key::ArrowDown, Nav::Pick(5)), // the group that cannot be picked is passed
            (5, Key::ArrowUp, Nav::Pick(3)),
            (5, Key::ArrowDown, Nav::Stay),
            (1, Key::ArrowRight, Nav::Toggle(1)), // closed: open it
            (2, Key::ArrowRight, Nav::Pick(3)),   // open: into its first child
            (2, Key::ArrowLeft, Nav::Toggle(2)),  // open: close it
            (3, Key::ArrowLeft, Nav::Pick(2)),    // closed: to its parent
            (1, Key::ArrowLeft, Nav::Pick(0)),    // to the domain
            (0, Key::ArrowLeft, Nav::Stay),
            (0, Key::ArrowRight, Nav::Stay), // the domain is always open
            (3, Key::Home, Nav::Pick(0)),
            (0, Key::End, Nav::Pick(5)),
            (2, Key::Enter, Nav::Stay),
            (9, Key::ArrowDown, Nav::Stay),
        ];
        for (at, key, want) in table {
            assert_eq!(arrow(&t, at, key), want, "{key:?} at {at}");
        }
        // Into an open container whose first child cannot be picked: stay.
        let mut t2 = shown();
        t2[3].pickable = false;
        assert_eq!(arrow(&t2, 2, Key::ArrowRight), Nav::Stay);
    }
}
