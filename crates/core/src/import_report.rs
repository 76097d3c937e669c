//! What `ad-sync-agent import` reports: one item per AD object (created, linked, already,
//! refused by the cloud, skipped by the safety rules) and the counts by kind and outcome. The
//! agent makes it; `import --json` prints it; the wizard's Finish page reads that JSON with
//! this same type, so the counts it asks the administrator to confirm are the agent's.

use crate::cloud::api::{ImportItem, ImportOutcome};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One line of the import's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportItem {
    pub kind: String,
    pub name: String,
    pub guid: String,
    /// created, linked, already, refused (by the cloud) or skipped (never imported).
    pub outcome: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl From<ImportItem> for ReportItem {
    fn from(i: ImportItem) -> ReportItem {
        let outcome = match i.outcome {
            ImportOutcome::Created => "created",
            ImportOutcome::Linked => "linked",
            ImportOutcome::Already => "already",
            ImportOutcome::Refused => "refused",
        };
        ReportItem {
            kind: i.kind,
            name: i.name,
            guid: i.guid,
            outcome: outcome.into(),
            message: i.message,
        }
    }
}

/// Counts by kind and outcome, for the summary.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Report {
    pub dry_run: bool,
    /// kind -> outcome -> count.
    pub counts: BTreeMap<String, BTreeMap<String, usize>>,
    pub items: Vec<ReportItem>,
}

impl Report {
    pub fn add(&mut self, item: ReportItem) {
        *self
            .counts
            .entry(item.kind.clone())
            .or_default()
            .entry(item.outcome.clone())
            .or_default() += 1;
        self.items.push(item);
    }

    pub fn count(&self, kind: &str, outcome: &str) -> usize {
        self.counts
            .get(kind)
            .and_then(|c| c.get(outcome))
            .copied()
            .unwrap_or(0)
    }

    /// What the import writes (or, in a dry run, would write): objects created or linked in
    /// the cloud, and memberships added. Zero: there is nothing to confirm.
    pub fn would_write(&self) -> usize {
        self.counts
            .values()
            .flat_map(|c| c.iter())
            .filter(|(o, _)| matches!(o.as_str(), "created" | "linked" | "would add"))
            .map(|(_, n)| n)
            .sum()
    }

    /// One line per kind: `users: 3 created, 1 linked, ...`.
    pub fn summary(&self) -> Vec<String> {
        self.counts
            .iter()
            .map(|(kind, c)| {
                let parts: Vec<String> = c.iter().map(|(o, n)| format!("{n} {o}")).collect();
                format!("{kind}s: {}", parts.join(", "))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_an_import_would_write_is_what_it_creates_links_or_adds() {
        let mut r = Report::default();
        let item = |kind: &str, outcome: &str| ReportItem {
            kind: kind.into(),
            name: "n".into(),
            guid: "g".into(),
            outcome: outcome.into(),
            message: String::new(),
        };
        for (k, o) in [
            ("user", "already"),
            ("user", "skipped"),
            ("group", "refused"),
        ] {
            r.add(item(k, o));
        }
        assert_eq!(r.would_write(), 0, "nothing to confirm");
        for (k, o) in [
            ("user", "created"),
            ("group", "linked"),
            ("membership", "would add"),
        ] {
            r.add(item(k, o));
        }
        assert_eq!(r.would_write(), 3);
    }
}
