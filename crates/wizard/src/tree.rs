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
    /// The DN whose ancestors were opened to show it (once per value).
    revealed: Option<String>,
}

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
/// install, the domain, which completes this host's name). Picking a container, typing a DN or changing a policy
/// must not read the tree again.
fn reader(answers: &Answers) -> Answers {
    let mut a = answers.clone();
    a.directory.root_user_dn = if a.server.dc_host.is_some() {
        String::new()
    } else {
        // A DC install connects to this host, whose short name the domain completes.
        Dn::parse(&a.directory.root_user_dn)
            .ok()
            .and_then(|p| p.dn.domain_dn())
            .map(|d| d.to_comma_form())
            .unwrap_or_default()
    };
    a.directory.sync_group_dn = None;
    a.cloud = None;
    a.sync = Default::default();
    a.install = None;
    a
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
            revealed: None,
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
        if self.revealed.as_deref() == Some(dn) {
            return;
        }
        self.revealed = Some(dn.to_string());
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

    /// The first level, once read.
    pub fn top<'v>(&self, v: &'v Validator) -> Option<&'v Level> {
        match v.view(self.slot(self.start.as_deref())) {
            View::Done(Outcome::Level(Ok(level))) => Some(level),
            _ => None,
        }
    }

    /// Draws the filter box and the tree; `selected` is the field's current DN (highlighted).
    /// `label` names the tree for screen readers and tests.
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        v: &mut Validator,
        answers: &Answers,
        selected: Option<&Dn>,
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
        if let (Some(base), Some(sel)) = (self.top(v).map(|l| l.base.clone()), selected) {
            self.reveal(&sel.to_comma_form(), &base);
        }
        let mut rows = vec![Row::Top];
        self.walk(v, answers, start.as_deref(), 1, &mut rows);
        let row_h = ui.spacing().interact_size.y;
        let spacing = ui.spacing().item_spacing.y;
        let height = VISIBLE_ROWS * (row_h + spacing);
        let mut actions = Vec::new();
        egui::Frame::group(ui.style()).show(ui, |ui| {
            egui::ScrollArea::vertical()
                .id_salt(("tree", label))
                .auto_shrink([false, false])
                .min_scrolled_height(height)
                .max_height(height)
                .show_rows(ui, row_h, rows.len(), |ui, range| {
                    for row in &rows[range] {
                        ui.horizontal(|ui| {
                            ui.set_height(row_h);
                            self.row(ui, v, row, selected, &mut actions);
                        });
                    }
                });
        });
        if !actions.is_empty() {
            // The field above the tree was drawn before the pick: draw again to show it.
            ui.ctx().request_repaint();
        }
        for a in actions {
            match a {
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
        selected: Option<&Dn>,
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
                        unpickable: (self.offer == Offer::Groups)
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
                    (Offer::Groups, true) => "(no groups or containers here)",
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
        selected: Option<&Dn>,
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
        let is_selected =
            selected.is_some_and(|s| Dn::parse(&n.dn).map(|p| p.dn.same_as(s)).unwrap_or(false));
        let pick = ui.add_enabled(
            n.unpickable.is_none(),
            egui::Button::selectable(is_selected, n.name.as_str()),
        );
        if pick.clicked() {
            actions.push(Action::Pick(n.dn.clone()));
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
    Pick(String),
    Toggle(String),
    More(Option<String>, Slot),
    Retry(Slot),
    Cancel(Slot),
}
