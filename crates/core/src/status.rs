//! The agent's health as the server shows it: what `ad-sync-agent status --json` prints and the
//! wizard's review mode reads (it runs that command, so the agent's state is read by the agent's
//! own code only). `judge` turns the facts into one light (green, amber, red), a sentence and
//! what to do; it is pure and table-tested.

use serde::{Deserialize, Serialize};

/// The facts `status` reads from the agent's state (and, when it can reach it, the cloud).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// The agent's id in the cloud (None: not enrolled).
    pub agent_id: Option<String>,
    /// The cloud it is enrolled with.
    pub cloud_url: Option<String>,
    /// The state file read.
    pub state_path: String,
    /// Whether a state exists yet (none before the first run).
    pub state_found: bool,
    /// The role the cloud gave in its last answer (`primary` / `standby`).
    pub role: Option<String>,
    /// The last run that finished (RFC 3339), and the last that held and failed nothing.
    pub last_run: Option<String>,
    pub last_success: Option<String>,
    /// Unix seconds of `last_run` (what the wizard compares with the install's time).
    #[serde(default)]
    pub last_run_unix: Option<i64>,
    /// A run under way now, and how far it has come.
    #[serde(default)]
    pub running: Option<crate::progress::Progress>,
    /// Users and groups the agent manages.
    pub managed_users: usize,
    pub managed_groups: usize,
    /// Disconnections the deletion threshold holds, waiting for `pending --approve`.
    pub held: Vec<HeldItem>,
    /// Changes the last run failed (how many), and those it recorded with their reasons.
    pub failed: usize,
    pub failures: Vec<Failure>,
    /// Results not yet acknowledged to the cloud (sent with the next run).
    pub queued_acks: usize,
    /// The last time the agent asked the cloud, and what came of it.
    pub cloud_contact: Option<CloudContact>,
    /// What stopped the last run, if it did not finish.
    pub last_problem: Option<String>,
    /// The cloud's own view of this agent, asked now (None when not asked or not reached).
    pub cloud_view: Option<CloudView>,
    /// Why the cloud's view could not be read, when it was asked.
    pub cloud_view_error: Option<String>,
    /// What `status` could not read, or read and did not use (a state of another enrollment).
    pub notes: Vec<String>,
    /// `[sync] direction` as the config says (`cloud-to-ad` when absent).
    #[serde(default)]
    pub direction: Option<String>,
    /// How the last export of AD's changes to the cloud went (AD as a source).
    #[serde(default)]
    pub export: Option<ExportRecord>,
    /// The judgement (`judge`), filled in by `status`.
    pub light: Light,
    pub headline: String,
    pub fix: Option<String>,
}

/// How the last export of AD's changes to the cloud went, as the agent records it in its
/// state after each one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRecord {
    /// Unix seconds, when it started.
    pub at: i64,
    /// When the last export that finished started (0: none yet).
    pub last_success: i64,
    /// It read everything (no cursor yet, or another DC's).
    pub full: bool,
    pub changed: usize,
    pub created: usize,
    pub updated: usize,
    pub suspended: usize,
    pub restored: usize,
    /// Users the cloud refused: (objectGUID, its reason), the first 20.
    pub refused: Vec<(String, String)>,
    pub refused_total: usize,
    /// Why it stopped before its end.
    pub error: Option<String>,
    /// How AD's changes were read: `dirsync`, or `usn` (`uSNChanged`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reader: String,
    /// Why they were read by `uSNChanged` when DirSync was asked for (the DC refused it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldItem {
    pub id: String,
    /// user | group
    pub kind: String,
    pub name: String,
    /// delete | disable | release | suspend
    pub action: String,
    pub dn: String,
    pub since: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// What failed (user:ID, group:ID, password:ID).
    pub what: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudContact {
    pub at: String,
    /// Unix seconds of `at`, for the judgement.
    pub at_unix: i64,
    pub answered: bool,
    /// The error when it did not answer.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudView {
    pub health: String,
    pub role: String,
    pub last_seen: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Light {
    #[default]
    Green,
    Amber,
    Red,
}

/// The cloud not answered for longer than this (seconds) is red: the agent cannot sync.
pub const CLOUD_SILENT_RED: i64 = 15 * 60;

/// One light, a sentence and what to do, from the facts. Red: the agent cannot do its job (not
/// enrolled, the cloud unreachable, the last run stopped). Amber: it runs, but something waits
/// for the administrator (held disconnections, failed changes) or it has not run yet. Green:
/// the last run finished with nothing held or failed.
pub fn judge(s: &AgentStatus, now_unix: i64) -> (Light, String, Option<String>) {
    if s.agent_id.is_none() {
        return (
            Light::Red,
            "The agent is not enrolled with a cloud".into(),
            Some("Run the setup again with a new connect key.".into()),
        );
    }
    if let Some(c) = &s.cloud_contact
        && !c.answered
    {
        let long = now_unix - c.at_unix > CLOUD_SILENT_RED;
        return (
            if long { Light::Red } else { Light::Amber },
            format!(
                "The cloud did not answer the agent's last call ({})",
                c.error.as_deref().unwrap_or("no answer")
            ),
            Some("Check that this server reaches the cloud's URL (firewall, proxy) and that the cloud runs; the agent keeps retrying.".into()),
        );
    }
    if let Some(p) = &s.last_problem {
        return (
            Light::Red,
            format!("The last run stopped: {p}"),
            Some("Fix what it names; the agent retries on its own (see agent.log).".into()),
        );
    }
    if let Some(e) = &s.export
        && let Some(why) = &e.error
    {
        return (
            Light::Red,
            format!("Sending AD's changes to the cloud stopped: {why}"),
            Some("Fix what it names; the agent retries on its own (see agent.log).".into()),
        );
    }
    if s.role.as_deref() == Some("standby") {
        return (
            Light::Green,
            "This agent is the standby: another agent of this domain syncs, and this one takes over if it stops".into(),
            None,
        );
    }
    if !s.held.is_empty() {
        return (
            Light::Amber,
            format!(
                "{} disconnection{} held by the deletion threshold",
                s.held.len(),
                if s.held.len() == 1 { " is" } else { "s are" }
            ),
            Some("Review them with ad-sync-agent pending --config FILE, then approve them or restore the objects in the cloud.".into()),
        );
    }
    if s.failed > 0 {
        return (
            Light::Amber,
            format!(
                "The last run failed {} change{}",
                s.failed,
                if s.failed == 1 { "" } else { "s" }
            ),
            Some("Each failure below says why; fix it in AD or the cloud, and the next run tries again.".into()),
        );
    }
    if let Some(e) = &s.export
        && e.refused_total > 0
    {
        return (
            Light::Amber,
            format!(
                "The cloud refused {} user{} sent from AD",
                e.refused_total,
                if e.refused_total == 1 { "" } else { "s" }
            ),
            Some("Each refusal below says why; fix the user in AD (or the cloud's user in the way), and the next change to it is sent again.".into()),
        );
    }
    let only_from_ad = s.direction.as_deref() == Some("ad-to-cloud");
    let exported = s.export.as_ref().is_some_and(|e| e.last_success > 0);
    if (only_from_ad && !exported) || (!only_from_ad && s.last_run.is_none()) {
        return (
            Light::Amber,
            "The agent has not finished a run yet".into(),
            Some(
                "Start the service if it is not running; the first run starts within a minute."
                    .into(),
            ),
        );
    }
    (
        Light::Green,
        if only_from_ad {
            "The agent works: its last export of AD's changes finished with nothing refused"
        } else {
            "The agent works: its last run finished with nothing held or failed"
        }
        .into(),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn working() -> AgentStatus {
        AgentStatus {
            agent_id: Some("a1".into()),
            role: Some("primary".into()),
            last_run: Some("2026-12-05T01:00:00Z".into()),
            last_success: Some("2026-12-05T01:00:00Z".into()),
            cloud_contact: Some(CloudContact {
                at: "2026-12-05T01:00:00Z".into(),
                at_unix: 1000,
                answered: true,
                error: None,
            }),
            ..AgentStatus::default()
        }
    }

    #[test]
    fn one_light_per_condition() {
        type Change = fn(&mut AgentStatus);
        let held = HeldItem {
            id: "u1".into(),
            kind: "user".into(),
            name: "alice".into(),
            action: "delete".into(),
            dn: "CN=alice".into(),
            since: String::new(),
        };
        let cases: &[(&str, Change, Light, &str)] = &[
            ("working", |_| {}, Light::Green, "works"),
            (
                "not enrolled",
                |s| s.agent_id = None,
                Light::Red,
                "not enrolled",
            ),
            (
                "cloud silent for a minute",
                |s| {
                    if let Some(c) = &mut s.cloud_contact {
                        c.answered = false;
                        c.at_unix = 1000 - 60;
                    }
                },
                Light::Amber,
                "did not answer",
            ),
            (
                "cloud silent for an hour",
                |s| {
                    if let Some(c) = &mut s.cloud_contact {
                        c.answered = false;
                        c.at_unix = 1000 - 3600;
                    }
                },
                Light::Red,
                "did not answer",
            ),
            (
                "the run stopped",
                |s| s.last_problem = Some("the DC refused".into()),
                Light::Red,
                "stopped: the DC refused",
            ),
            (
                "standby",
                |s| s.role = Some("standby".into()),
                Light::Green,
                "standby",
            ),
            (
                "failed changes",
                |s| s.failed = 2,
                Light::Amber,
                "failed 2 changes",
            ),
            (
                "never ran",
                |s| s.last_run = None,
                Light::Amber,
                "not finished a run",
            ),
            (
                "the export stopped",
                |s| {
                    s.export = Some(ExportRecord {
                        error: Some("the DC did not answer".into()),
                        ..ExportRecord::default()
                    })
                },
                Light::Red,
                "Sending AD's changes to the cloud stopped: the DC did not answer",
            ),
            (
                "the cloud refused users from AD",
                |s| {
                    s.export = Some(ExportRecord {
                        last_success: 900,
                        refused_total: 3,
                        ..ExportRecord::default()
                    })
                },
                Light::Amber,
                "refused 3 users sent from AD",
            ),
            (
                "AD is the source and has been exported (no cloud -> AD run is expected)",
                |s| {
                    s.direction = Some("ad-to-cloud".into());
                    s.last_run = None;
                    s.export = Some(ExportRecord {
                        last_success: 900,
                        ..ExportRecord::default()
                    })
                },
                Light::Green,
                "its last export of AD's changes finished",
            ),
            (
                "AD is the source and nothing was exported yet",
                |s| {
                    s.direction = Some("ad-to-cloud".into());
                    s.last_run = None;
                },
                Light::Amber,
                "not finished a run",
            ),
        ];
        for (name, change, light, words) in cases {
            let mut s = working();
            change(&mut s);
            let (l, headline, fix) = judge(&s, 1000);
            assert_eq!(l, *light, "{name}: {headline}");
            assert!(headline.contains(words), "{name}: {headline}");
            assert_eq!(
                fix.is_some(),
                l != Light::Green,
                "{name}: a fix with every problem"
            );
        }
        let mut s = working();
        s.held = vec![held.clone(), held];
        s.failed = 1;
        let (l, headline, _) = judge(&s, 1000);
        assert_eq!(l, Light::Amber);
        assert!(headline.contains("2 disconnections are held"), "{headline}");
    }
}
