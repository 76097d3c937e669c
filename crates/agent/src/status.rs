//! `ad-sync-agent status`: the agent's health on the server, read from its state (opened
//! read-only: nothing is created, set aside or locked) and, when it can reach it, the cloud's
//! own view of this agent. `ad_sync_core::status::judge` decides the light; the wizard's review
//! mode runs this command and shows the same.

use crate::Agent;
use crate::state::{Binding, State};
use ad_sync_core::status::{AgentStatus, CloudContact, CloudView, Failure, HeldItem, judge};
use ad_sync_core::time_fmt::unix_to_rfc3339;
use std::path::Path;

/// The facts in the state at `state_dir` for the enrollment `binding` (None: the agent's
/// secrets could not be read, so which enrollment the state belongs to is not proven; its
/// figures are shown with a note).
pub fn from_state(state_dir: &Path, binding: Option<&Binding>, out: &mut AgentStatus) {
    out.state_path = state_dir.join("state.db").display().to_string();
    let (state, recorded) = match State::open_read(state_dir) {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => {
            out.notes.push(format!("the state could not be read: {e}"));
            return;
        }
    };
    out.state_found = true;
    match (binding, &recorded) {
        (Some(b), Some(r)) if b != r => {
            out.notes.push(format!(
                "the state belongs to {}, not to this agent ({}): it is set aside when the agent next starts, and nothing in it is shown",
                r.describe(),
                b.describe()
            ));
            return;
        }
        (None, _) => out.notes.push(
            "the agent's secrets could not be read, so the state is shown without proving it is this enrollment's".into(),
        ),
        _ => {}
    }
    out.running = crate::progress::read(state_dir, ad_sync_core::time_fmt::now_unix());
    fill(&state, out);
}

fn fill(state: &State, out: &mut AgentStatus) {
    let when = |t: i64| (t > 0).then(|| unix_to_rfc3339(t));
    let last = state.last_run();
    out.last_run = when(last.at);
    out.last_run_unix = (last.at > 0).then_some(last.at);
    out.last_success = when(last.last_success);
    out.failed = last.failed;
    out.failures = last
        .failures
        .iter()
        .map(|f| Failure {
            what: format!("change {}", f.seq),
            reason: f.reason.clone(),
        })
        .collect();
    match state.counts() {
        Ok((users, groups, acks)) => {
            out.managed_users = users;
            out.managed_groups = groups;
            out.queued_acks = acks;
        }
        Err(e) => out.notes.push(format!("the state's counts: {e}")),
    }
    match state.held_all() {
        Ok(held) => {
            out.held = held
                .iter()
                .map(|h| HeldItem {
                    id: h.id.clone(),
                    kind: h.kind.to_string(),
                    name: h.name.clone(),
                    action: h.action.to_string(),
                    dn: h.dn.clone(),
                    since: unix_to_rfc3339(h.since),
                })
                .collect()
        }
        Err(e) => out.notes.push(format!("the held disconnections: {e}")),
    }
    if let Some(c) = state.contact() {
        out.role = c.role.clone();
        out.cloud_contact = Some(CloudContact {
            at: unix_to_rfc3339(c.at),
            at_unix: c.at,
            answered: c.answered,
            error: c.error,
        });
    }
    out.last_problem = state.problem();
    out.export = state.last_export();
}

/// The cloud's view of this agent (`GET /v1/agents/self`: read only, not a heartbeat).
pub async fn cloud_view(agent: &Agent) -> Result<CloudView, String> {
    let me = agent
        .client
        .agent_self(&agent.credential)
        .await
        .map_err(|e| format!("{e}; {}", e.fix()))?;
    Ok(CloudView {
        health: me.health,
        role: match me.role {
            ad_sync_core::cloud::api::Role::Primary => "primary",
            ad_sync_core::cloud::api::Role::Standby => "standby",
        }
        .into(),
        last_seen: me.last_seen,
    })
}

/// Decides the light from what was gathered.
pub fn conclude(out: &mut AgentStatus) {
    let (light, headline, fix) = judge(out, ad_sync_core::time_fmt::now_unix());
    out.light = light;
    out.headline = headline;
    out.fix = fix;
}

/// The status as text, for a terminal.
pub fn text(s: &AgentStatus) -> String {
    use ad_sync_core::status::Light;
    let mut out = Vec::new();
    out.push(format!(
        "{}: {}",
        match s.light {
            Light::Green => "OK",
            Light::Amber => "ATTENTION",
            Light::Red => "NOT WORKING",
        },
        s.headline
    ));
    if let Some(fix) = &s.fix {
        out.push(format!("  What to do: {fix}"));
    }
    if let Some(p) = &s.running {
        out.push(format!("Running now: {}", p.sentence()));
    }
    out.push(format!(
        "Agent:       {} ({}) with {}",
        s.agent_id.as_deref().unwrap_or("not enrolled"),
        s.role.as_deref().unwrap_or("role not known yet"),
        s.cloud_url.as_deref().unwrap_or("no cloud")
    ));
    out.push(format!(
        "Last run:    {}; last success: {}",
        s.last_run.as_deref().unwrap_or("none yet"),
        s.last_success.as_deref().unwrap_or("none yet")
    ));
    if let Some(d) = &s.direction {
        out.push(format!(
            "Direction:   {}",
            match d.as_str() {
                "ad-to-cloud" => "AD to the cloud (AD is the source)",
                "both" => "both ways (each user's authority is where it was made)",
                _ => "the cloud to AD (the cloud is the source)",
            }
        ));
    }
    if let Some(e) = &s.export {
        let when = |t: i64| {
            if t > 0 {
                unix_to_rfc3339(t)
            } else {
                "none yet".into()
            }
        };
        out.push(format!(
            "AD to cloud: last export {}{}; last success: {}",
            when(e.at),
            match &e.error {
                Some(why) => format!(" stopped: {why}"),
                None => format!(
                    " ({}{} changed: {} created, {} updated, {} suspended, {} restored, {} refused)",
                    if e.full { "a full read, " } else { "" },
                    e.changed,
                    e.created,
                    e.updated,
                    e.suspended,
                    e.restored,
                    e.refused_total
                ),
            },
            when(e.last_success)
        ));
        match (e.reader.as_str(), &e.fallback) {
            ("usn", Some(why)) => out.push(format!("  read by uSNChanged: {why}")),
            ("usn", None) => {
                out.push("  read by uSNChanged ([source] change_detection = \"usn\")".to_string())
            }
            ("dirsync", _) => out.push("  read by DirSync".to_string()),
            _ => {}
        }
        for (guid, why) in &e.refused {
            out.push(format!("  refused {guid}: {why}"));
        }
    }
    out.push(format!(
        "Manages:     {} users, {} groups",
        s.managed_users, s.managed_groups
    ));
    out.push(format!("Held:        {}", s.held.len()));
    for h in &s.held {
        out.push(format!(
            "  {} {} {} ({}): would {}; held since {}",
            h.kind, h.id, h.name, h.dn, h.action, h.since
        ));
    }
    out.push(format!("Failed:      {} in the last run", s.failed));
    for f in &s.failures {
        out.push(format!("  {}: {}", f.what, f.reason));
    }
    out.push(format!(
        "To report:   {} results wait to be acknowledged to the cloud",
        s.queued_acks
    ));
    match &s.cloud_contact {
        Some(c) if c.answered => out.push(format!("Cloud:       answered at {}", c.at)),
        Some(c) => out.push(format!(
            "Cloud:       did not answer at {}: {}",
            c.at,
            c.error.as_deref().unwrap_or("")
        )),
        None => out.push("Cloud:       not asked yet".into()),
    }
    match (&s.cloud_view, &s.cloud_view_error) {
        (Some(v), _) => out.push(format!(
            "             the cloud sees this agent as {}, {} (last heard from {})",
            v.role, v.health, v.last_seen
        )),
        (None, Some(e)) => out.push(format!(
            "             the cloud could not be asked now: {e}"
        )),
        _ => {}
    }
    for n in &s.notes {
        out.push(format!("Note: {n}"));
    }
    out.join("\n")
}
