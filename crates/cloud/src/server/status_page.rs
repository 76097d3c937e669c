//! The status page at `/`: domain instances and their agents, green while heartbeating, with last
//! seen, version, host and which one is primary. Plain HTML that refreshes itself; no scripts.

use std::fmt::Write as _;

use super::store::{AdminError, AgentRow, Store, Timing};
use ad_sync_api::time_fmt::unix_to_rfc3339;

/// How an agent looks from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Called in within the heartbeat interval (plus slack).
    Healthy,
    /// Late, but not yet past the primary timeout.
    Late,
    /// Silent past the primary timeout: its role has moved or will.
    Silent,
    Deregistered,
}

/// How an agent's runs go, in a few words: blocked by the deletion threshold, failing changes,
/// degraded (its own message), or fine. For `agents` and the status page.
pub fn run_state(agent: &AgentRow) -> String {
    if agent.held > 0 {
        format!("blocked: {} held by the deletion threshold", agent.held)
    } else if agent.failed > 0 {
        format!("{} changes failed", agent.failed)
    } else if agent.source_refused > 0 {
        format!(
            "{} object(s) from AD refused by the cloud",
            agent.source_refused
        )
    } else if agent.status == "degraded" {
        "degraded".into()
    } else {
        "ok".into()
    }
}

/// The last successful run, in words.
pub fn last_success(agent: &AgentRow, now: i64) -> String {
    match agent.last_success {
        Some(t) => ago(now, t),
        None => "none yet".into(),
    }
}

impl Health {
    pub fn of(agent: &AgentRow, timing: Timing, now: i64) -> Health {
        if agent.deregistered_at.is_some() {
            return Health::Deregistered;
        }
        let age = now.saturating_sub(agent.last_seen);
        let interval = timing.heartbeat_interval.as_secs() as i64;
        if age <= interval * 2 {
            Health::Healthy
        } else if age <= timing.primary_timeout.as_secs() as i64 {
            Health::Late
        } else {
            Health::Silent
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Late => "late",
            Health::Silent => "silent",
            Health::Deregistered => "deregistered",
        }
    }

    fn colour(self) -> &'static str {
        match self {
            Health::Healthy => "#1a7f37",
            Health::Late => "#9a6700",
            Health::Silent => "#cf222e",
            Health::Deregistered => "#6e7781",
        }
    }
}

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn ago(now: i64, then: i64) -> String {
    let s = now.saturating_sub(then).max(0);
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

pub fn render(store: &Store, timing: Timing, now: i64) -> Result<String, AdminError> {
    let domains = store.domains()?;
    let agents = store.agents()?;
    let change_count = store.change_count()?;
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"10\"><title>ad-sync-cloud status</title>\
         <style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}\
         td,th{border:1px solid #d0d7de;padding:.3em .7em;text-align:left}th{background:#f6f8fa}\
         .dot{display:inline-block;width:.8em;height:.8em;border-radius:50%;margin-right:.4em}</style>\
         </head><body><h1>ad-sync-cloud</h1>",
    );
    // Writing to a String cannot fail.
    let _ = write!(
        html,
        "<p>{} domain instance(s), {} agent(s), {} change(s) in the directory log. Updated {}.</p>",
        domains.len(),
        agents
            .iter()
            .filter(|a| a.deregistered_at.is_none())
            .count(),
        change_count,
        unix_to_rfc3339(now)
    );
    html.push_str("<h2>Domains</h2><table><tr><th>Domain</th><th>Primary agent</th><th>Changes applied</th></tr>");
    for d in &domains {
        // Writing to a String cannot fail.
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{} of {}</td></tr>",
            escape(&d.dn),
            escape(d.primary_agent.as_deref().unwrap_or("none yet")),
            d.acked_cursor,
            d.last_seq
        );
    }
    html.push_str("</table><h2>Agents</h2><table><tr><th>State</th><th>Agent</th><th>Domain</th><th>Role</th><th>Host</th><th>Version</th><th>Last seen</th><th>Runs</th><th>Last successful run</th><th>Message</th></tr>");
    for a in &agents {
        let health = Health::of(a, timing, now);
        // Writing to a String cannot fail.
        let _ = write!(
            html,
            "<tr><td><span class=\"dot\" style=\"background:{}\"></span>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td title=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            health.colour(),
            health.label(),
            escape(&a.id),
            escape(&a.domain),
            if a.primary { "primary" } else { "standby" },
            escape(&a.host),
            escape(&a.version),
            unix_to_rfc3339(a.last_seen),
            ago(now, a.last_seen),
            escape(&run_state(a)),
            escape(&last_success(a, now)),
            escape(a.message.as_deref().unwrap_or(&a.status)),
        );
    }
    html.push_str("</table>");
    let sources = store
        .source_overview()
        .map_err(|e| AdminError::Invalid(e.message))?;
    if !sources.is_empty() {
        html.push_str("<h2>AD as a source</h2><table><tr><th>Domain</th><th>Last batch from AD</th><th>Last full reconciliation</th><th>From AD</th><th>Backlog (held for approval)</th><th>Refused by the cloud</th></tr>");
        for s in &sources {
            let last = match (s.cursor.at, &s.cursor.dc, &s.cursor.agent_id) {
                (Some(at), Some(dc), Some(agent)) => {
                    // The agent's uSNChanged reader writes `usn1:` cursors (DirSync refused or
                    // switched off); DirSync's are its cookies in base64.
                    let how = if s
                        .cursor
                        .cookie
                        .as_deref()
                        .is_some_and(|c| c.starts_with("usn1:"))
                    {
                        "read by uSNChanged"
                    } else {
                        "read by DirSync"
                    };
                    format!("{} (from {dc}, by {agent}; {how})", ago(now, at))
                }
                _ => "none yet".into(),
            };
            let mut refused = s.refused.to_string();
            for (guid, why) in &s.latest_refusals {
                // Writing to a String cannot fail.
                let _ = write!(refused, "<br>{}: {}", escape(guid), escape(why));
            }
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} users, {} groups; {} deleted in AD, kept</td><td>{}</td><td>{}</td></tr>",
                escape(&s.domain),
                escape(&last),
                escape(
                    &s.last_reconcile
                        .map_or("none yet".to_string(), |t| ago(now, t))
                ),
                s.users,
                s.groups,
                s.deleted,
                if s.held_from_ad == 0 {
                    "none".to_string()
                } else {
                    format!(
                        "{} suspension{} (ad-sync-agent pending)",
                        s.held_from_ad,
                        if s.held_from_ad == 1 { "" } else { "s" }
                    )
                },
                refused
            );
        }
        html.push_str("</table>");
    }
    let mirrors = store.mirrors()?;
    if !mirrors.is_empty() {
        html.push_str("<h2>Forest to forest</h2><table><tr><th>From (its AD is the source)</th><th>Into</th><th>Since</th><th>Copies</th><th>Left out (the name is taken there)</th></tr>");
        for m in &mirrors {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} users, {} groups</td><td>{}</td></tr>",
                escape(&m.from),
                escape(&m.into),
                escape(&ago(now, m.since)),
                m.users,
                m.groups,
                if m.conflicts.is_empty() {
                    "none".to_string()
                } else {
                    escape(&m.conflicts.join(", "))
                }
            );
        }
        html.push_str("</table>");
    }
    html.push_str("</body></html>");
    Ok(html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_in_names() {
        assert_eq!(
            escape("<b>\"x\" & 'y'</b>"),
            "&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;"
        );
    }
}
