//! Alerts that reach someone: `serve --alert-webhook URL` posts a JSON event when an agent goes
//! silent, when its runs are blocked by the deletion threshold, or when it fails changes; once
//! when the incident starts and once when it clears, with retries.
//!
//! The decision is pure (`incidents`: the agents as the store has them → the incidents open
//! now); `diff` turns two such sets into events; the store keeps the open incidents, so a
//! restarted server neither repeats an alert nor forgets to clear it. Delivery is a queue with
//! retries: an unreachable receiver never slows the API.
//!
//! An event carries ids, host names, counts and times only: never a credential, a key, a
//! password, or the agent's free-text message (which may quote anything an error said). The
//! webhook's URL itself may hold a token (Slack, Teams): it is never logged, only its host.

use super::status_page::Health;
use super::store::{AgentRow, Timing};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The event schema's name and version (docs/cloud-api.md, "Alerts").
pub const SCHEMA: &str = "ad-sync.alert/1";

/// What went wrong with an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// No heartbeat for longer than the primary timeout.
    AgentSilent,
    /// Disconnections held by the deletion threshold, waiting for the administrator.
    RunBlocked,
    /// The agent's last run failed changes.
    ChangesFailed,
    /// AD as a source: users or groups from AD the cloud refused (the primary's).
    SourceRefused,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::AgentSilent => "agent_silent",
            Kind::RunBlocked => "run_blocked",
            Kind::ChangesFailed => "changes_failed",
            Kind::SourceRefused => "source_refused",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        [
            Kind::AgentSilent,
            Kind::RunBlocked,
            Kind::ChangesFailed,
            Kind::SourceRefused,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// An open incident: the agent, the kind, and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub summary: String,
}

/// Open incidents by (agent id, kind).
pub type Open = BTreeMap<(String, Kind), Incident>;

/// The incidents open now, from the agents as the store has them. A deregistered agent has
/// none; a silent agent's last run figures are not current, so only its silence is raised.
pub fn incidents(agents: &[AgentRow], timing: Timing, now: i64) -> Open {
    let mut open = Open::new();
    for a in agents {
        let mut raise = |kind: Kind, summary: String| {
            open.insert((a.id.clone(), kind), Incident { summary });
        };
        match Health::of(a, timing, now) {
            Health::Deregistered => continue,
            Health::Silent => {
                raise(
                    Kind::AgentSilent,
                    format!(
                        "agent {} on {} has not called in for {} s (the primary timeout is {} s)",
                        a.id,
                        a.host,
                        now.saturating_sub(a.last_seen),
                        timing.primary_timeout.as_secs()
                    ),
                );
                continue;
            }
            Health::Healthy | Health::Late => {}
        }
        if a.held > 0 {
            raise(
                Kind::RunBlocked,
                format!(
                    "agent {} on {}: {} disconnections are held by the deletion threshold; list and approve them with `ad-sync-agent pending --config FILE` on that server",
                    a.id, a.host, a.held
                ),
            );
        }
        if a.failed > 0 {
            raise(
                Kind::ChangesFailed,
                format!(
                    "agent {} on {}: its last run failed {} changes; the agent's log and the change results say why",
                    a.id, a.host, a.failed
                ),
            );
        }
        if a.source_refused > 0 {
            raise(
                Kind::SourceRefused,
                format!(
                    "domain {}: the cloud refused {} user(s) or group(s) sent from AD by agent {} on {}; the status page and `ad-sync-agent status` on that server say why and what to change in AD",
                    a.domain, a.source_refused, a.id, a.host
                ),
            );
        }
    }
    open
}

/// `raised` or `cleared`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    Raised,
    Cleared,
}

/// One alert as it is posted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub schema: &'static str,
    /// A stable id for the incident: the same in its `raised` and `cleared` events.
    pub incident: String,
    pub event: Kind,
    pub state: Transition,
    pub agent_id: String,
    pub domain: String,
    pub host: String,
    /// When the server saw the change (RFC 3339).
    pub at: String,
    /// The agent's last heartbeat (RFC 3339).
    pub last_seen: String,
    /// Disconnections held and changes failed, as the agent last said.
    pub held: i64,
    pub failed: i64,
    /// The agent's last successful run (RFC 3339), when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
    /// In words, for a chat message.
    pub summary: String,
}

/// The events between the incidents open before (`was`, with when each was raised) and now.
pub fn diff(
    was: &BTreeMap<(String, Kind), i64>,
    now_open: &Open,
    agents: &[AgentRow],
    now: i64,
) -> Vec<(Event, Option<i64>)> {
    let t = ad_sync_api::time_fmt::unix_to_rfc3339;
    let event = |(id, kind): &(String, Kind), state, raised_at: i64, summary: String| {
        let a = agents.iter().find(|a| &a.id == id);
        Event {
            schema: SCHEMA,
            incident: format!("{id}/{}/{raised_at}", kind.as_str()),
            event: *kind,
            state,
            agent_id: id.clone(),
            domain: a.map(|a| a.domain.clone()).unwrap_or_default(),
            host: a.map(|a| a.host.clone()).unwrap_or_default(),
            at: t(now),
            last_seen: a.map(|a| t(a.last_seen)).unwrap_or_default(),
            held: a.map_or(0, |a| a.held),
            failed: a.map_or(0, |a| a.failed),
            last_success: a.and_then(|a| a.last_success).map(t),
            summary,
        }
    };
    let mut out = Vec::new();
    for (key, inc) in now_open {
        if !was.contains_key(key) {
            out.push((
                event(key, Transition::Raised, now, inc.summary.clone()),
                Some(now),
            ));
        }
    }
    for (key, raised_at) in was {
        if !now_open.contains_key(key) {
            let summary = match key.1 {
                Kind::AgentSilent => format!("agent {} is calling in again", key.0),
                Kind::RunBlocked => format!(
                    "agent {}: nothing is held by the deletion threshold any more",
                    key.0
                ),
                Kind::ChangesFailed => format!("agent {}: its last run failed no change", key.0),
                Kind::SourceRefused => format!(
                    "agent {}: the cloud holds no refusal of what AD sent any more",
                    key.0
                ),
            };
            out.push((event(key, Transition::Cleared, *raised_at, summary), None));
        }
    }
    out
}

/// At most this many incidents of one kind for one agent are posted within `FLAP_WINDOW`;
/// more (an agent whose heartbeats flap, or one sending figures to flood the receiver) are
/// recorded as usual but not posted, their clearing included, until the window frees up.
pub const MAX_RAISED_PER_WINDOW: usize = 4;
pub const FLAP_WINDOW: i64 = 3600;

/// The rate limit on posted alerts, per agent and kind (pure: the watcher feeds it events and
/// the time). One agent cannot fill the queue every other agent's alerts go through.
#[derive(Debug, Default)]
pub struct RateLimit {
    raised: BTreeMap<(String, Kind), std::collections::VecDeque<i64>>,
    /// Incidents whose `raised` was not posted: their `cleared` is not posted either.
    quiet: std::collections::BTreeSet<String>,
    /// When the log last said an agent's alerts of a kind are held back.
    warned: BTreeMap<(String, Kind), i64>,
}

impl RateLimit {
    /// Whether `ev` is posted. A `raised` over the limit is not (and says so in the log once
    /// per window); a `cleared` is posted exactly when its `raised` was.
    pub fn admit(&mut self, ev: &Event, now: i64) -> bool {
        match ev.state {
            Transition::Cleared => !self.quiet.remove(&ev.incident),
            Transition::Raised => {
                let times = self
                    .raised
                    .entry((ev.agent_id.clone(), ev.event))
                    .or_default();
                while times.front().is_some_and(|t| now - t >= FLAP_WINDOW) {
                    times.pop_front();
                }
                if times.len() >= MAX_RAISED_PER_WINDOW {
                    self.quiet.insert(ev.incident.clone());
                    let key = (ev.agent_id.clone(), ev.event);
                    let warned = self.warned.get(&key).is_some_and(|t| now - t < FLAP_WINDOW);
                    if !warned {
                        self.warned.insert(key, now);
                        tracing::warn!(
                            "alerts: agent {} raised {} {} times within {} s; its further {} alerts are recorded (status page) but not posted until the hour frees up",
                            ev.agent_id,
                            ev.event.as_str(),
                            MAX_RAISED_PER_WINDOW,
                            FLAP_WINDOW,
                            ev.event.as_str()
                        );
                    }
                    return false;
                }
                times.push_back(now);
                true
            }
        }
    }
}

/// Where alerts go.
#[derive(Debug, Clone)]
pub struct Webhook {
    url: reqwest::Url,
    /// A receiver on this host: never through a proxy (HTTP_PROXY and friends would send the
    /// event, and the URL's token, to the proxy).
    loopback: bool,
}

impl Webhook {
    /// `https://...`, or `http://` to a loopback address (a receiver on this host). Anything
    /// else is refused with what to use.
    pub fn parse(text: &str) -> Result<Webhook, String> {
        let url = reqwest::Url::parse(text)
            .map_err(|e| format!("--alert-webhook: not a URL ({e}); give https://host/path"))?;
        let host = url.host_str().unwrap_or_default();
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|a| a.is_loopback());
        match url.scheme() {
            "https" => Ok(Webhook { url, loopback }),
            "http" if loopback => Ok(Webhook { url, loopback }),
            "http" => Err("--alert-webhook: plain http is allowed to a loopback address only (a receiver on this host); use https://".into()),
            other => Err(format!("--alert-webhook: the scheme {other}: is not supported; use https://")),
        }
    }

    /// The URL from a file (its first line) or an environment variable, so that a token in it
    /// is on no command line: `--alert-webhook-file` / `--alert-webhook-env`.
    pub fn from_file(path: &std::path::Path) -> Result<Webhook, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "--alert-webhook-file {}: {e}; give a file holding the URL",
                path.display()
            )
        })?;
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .ok_or_else(|| {
                format!(
                    "--alert-webhook-file {}: the file is empty; put the URL in it",
                    path.display()
                )
            })?;
        Webhook::parse(line)
    }

    pub fn from_env(var: &str) -> Result<Webhook, String> {
        let text = std::env::var(var).map_err(|_| {
            format!("--alert-webhook-env {var}: the variable is not set (or not UTF-8); set it to the URL")
        })?;
        Webhook::parse(text.trim())
    }

    /// Whether the receiver is on this host (posted without a proxy).
    pub fn is_loopback(&self) -> bool {
        self.loopback
    }

    /// The host, for logs (the URL's path and query may hold a token).
    pub fn shown(&self) -> String {
        format!(
            "{}://{}",
            self.url.scheme(),
            self.url.host_str().unwrap_or("?")
        )
    }
}

/// Delivers events in order, each with up to `ATTEMPTS` tries (1, 2, 4, 8 s apart); a receiver
/// that still refuses loses that event (logged), never the ones after it.
pub async fn deliver(hook: Webhook, mut rx: tokio::sync::mpsc::Receiver<Event>) {
    const ATTEMPTS: u32 = 5;
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5));
    if hook.loopback {
        builder = builder.no_proxy();
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("alerts: no HTTP client ({e}); no alert will be sent");
            return;
        }
    };
    while let Some(ev) = rx.recv().await {
        let mut wait = Duration::from_secs(1);
        for attempt in 1..=ATTEMPTS {
            let r = client.post(hook.url.clone()).json(&ev).send().await;
            match r {
                Ok(resp) if resp.status().is_success() => {
                    tracing::info!(incident = %ev.incident, event = ev.event.as_str(), state = ?ev.state, to = %hook.shown(), "alert delivered");
                    break;
                }
                Ok(resp) => tracing::warn!(
                    "alert {} to {}: answered {} (attempt {attempt} of {ATTEMPTS})",
                    ev.incident,
                    hook.shown(),
                    resp.status()
                ),
                // reqwest's error names the URL: only its kind is logged.
                Err(e) => tracing::warn!(
                    "alert {} to {}: {} (attempt {attempt} of {ATTEMPTS})",
                    ev.incident,
                    hook.shown(),
                    if e.is_timeout() {
                        "timed out"
                    } else if e.is_connect() {
                        "cannot connect"
                    } else {
                        "request failed"
                    }
                ),
            }
            if attempt == ATTEMPTS {
                tracing::error!(
                    "alert {} to {} was not delivered after {ATTEMPTS} attempts; it is dropped (the status page still shows the incident)",
                    ev.incident,
                    hook.shown()
                );
            } else {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, last_seen: i64, held: i64, failed: i64) -> AgentRow {
        AgentRow {
            id: id.into(),
            domain: "DC=example,DC=com".into(),
            host: "dc1".into(),
            version: "0.1.0".into(),
            os: "linux".into(),
            enrolled_at: 0,
            last_seen,
            status: "ok".into(),
            message: Some("password=hunter2 in an error".into()),
            deregistered_at: None,
            primary: true,
            held,
            failed,
            last_run: None,
            last_success: None,
            source_refused: 0,
        }
    }

    fn timing() -> Timing {
        Timing {
            heartbeat_interval: Duration::from_secs(30),
            primary_timeout: Duration::from_secs(90),
        }
    }

    #[test]
    fn incidents_are_raised_once_and_cleared_once() {
        let now = 1_000;
        // (agents, open incidents expected)
        type Case<'a> = (&'a str, Vec<AgentRow>, Vec<(&'a str, Kind)>);
        let cases: Vec<Case> = vec![
            ("healthy", vec![agent("a", now - 5, 0, 0)], vec![]),
            (
                "blocked and failing",
                vec![agent("a", now - 5, 3, 2)],
                vec![("a", Kind::RunBlocked), ("a", Kind::ChangesFailed)],
            ),
            (
                "silent: only the silence (its run figures are old)",
                vec![agent("a", now - 500, 3, 0)],
                vec![("a", Kind::AgentSilent)],
            ),
            (
                "AD as a source: objects from AD the cloud refused",
                vec![AgentRow {
                    source_refused: 2,
                    ..agent("a", now - 5, 0, 0)
                }],
                vec![("a", Kind::SourceRefused)],
            ),
            (
                "silent: its refusals are not raised (only the silence)",
                vec![AgentRow {
                    source_refused: 2,
                    ..agent("a", now - 500, 0, 0)
                }],
                vec![("a", Kind::AgentSilent)],
            ),
            (
                "late is not silent",
                vec![agent("a", now - 60, 0, 0)],
                vec![],
            ),
            (
                "deregistered: nothing",
                vec![AgentRow {
                    deregistered_at: Some(1),
                    ..agent("a", now - 500, 3, 3)
                }],
                vec![],
            ),
        ];
        for (name, agents, want) in cases {
            let got: Vec<(String, Kind)> = incidents(&agents, timing(), now).into_keys().collect();
            let want: Vec<(String, Kind)> =
                want.into_iter().map(|(a, k)| (a.to_string(), k)).collect();
            assert_eq!(got, want, "{name}");
        }
        // Raised once, not again while open, cleared once with the same incident id.
        let agents = vec![agent("a", now - 5, 3, 0)];
        let open = incidents(&agents, timing(), now);
        let first = diff(&BTreeMap::new(), &open, &agents, now);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].0.state, Transition::Raised);
        let was: BTreeMap<_, _> = open.keys().map(|k| (k.clone(), now)).collect();
        assert!(diff(&was, &open, &agents, now + 10).is_empty());
        let agents = vec![agent("a", now + 15, 0, 0)];
        let cleared = diff(
            &was,
            &incidents(&agents, timing(), now + 20),
            &agents,
            now + 20,
        );
        assert_eq!(cleared.len(), 1);
        assert_eq!(cleared[0].0.state, Transition::Cleared);
        assert_eq!(cleared[0].0.incident, first[0].0.incident);
        // The agent's free-text message never travels.
        let text = serde_json::to_string(&first[0].0).unwrap_or_default();
        assert!(!text.contains("hunter2"), "{text}");
    }

    fn ev(agent: &str, kind: Kind, state: Transition, raised_at: i64) -> Event {
        Event {
            schema: SCHEMA,
            incident: format!("{agent}/{}/{raised_at}", kind.as_str()),
            event: kind,
            state,
            agent_id: agent.into(),
            domain: String::new(),
            host: String::new(),
            at: String::new(),
            last_seen: String::new(),
            held: 0,
            failed: 0,
            last_success: None,
            summary: String::new(),
        }
    }

    #[test]
    fn a_flapping_agent_is_rate_limited_per_kind_and_others_are_not() {
        let mut r = RateLimit::default();
        let mut posted = Vec::new();
        // agent a flaps every 10 s for ten minutes: raised, cleared, raised...
        for i in 0..60i64 {
            let t = 1_000 + i * 10;
            let e = if i % 2 == 0 {
                ev("a", Kind::RunBlocked, Transition::Raised, t)
            } else {
                ev("a", Kind::RunBlocked, Transition::Cleared, t - 10)
            };
            if r.admit(&e, t) {
                posted.push(e.state);
            }
        }
        // Four incidents posted, each raised and cleared; nothing after.
        assert_eq!(posted.len(), 8, "{posted:?}");
        assert_eq!(posted.last(), Some(&Transition::Cleared));
        // Another kind of the same agent, and another agent, are not held back.
        assert!(r.admit(
            &ev("a", Kind::AgentSilent, Transition::Raised, 1_700),
            1_700
        ));
        assert!(r.admit(&ev("b", Kind::RunBlocked, Transition::Raised, 1_700), 1_700));
        // An hour after the first ones, the window has room again.
        assert!(r.admit(&ev("a", Kind::RunBlocked, Transition::Raised, 4_700), 4_700));
    }

    #[test]
    fn the_webhook_url_comes_from_a_file_or_the_environment_and_loopback_skips_proxies() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let f = dir.path().join("hook");
        std::fs::write(&f, "\n  https://hooks.example.com/T0/secret-token\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let w = Webhook::from_file(&f).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(w.shown(), "https://hooks.example.com");
        assert!(!w.is_loopback());
        std::fs::write(&f, "").unwrap_or_else(|e| panic!("{e}"));
        assert!(Webhook::from_file(&f).is_err_and(|e| e.contains("empty")));
        assert!(
            Webhook::from_env("AD_SYNC_NO_SUCH_VARIABLE_9").is_err_and(|e| e.contains("not set"))
        );
        assert!(Webhook::parse("http://127.0.0.1:9/x").is_ok_and(|w| w.is_loopback()));
        assert!(Webhook::parse("http://[::1]:9/x").is_ok_and(|w| w.is_loopback()));
    }

    #[test]
    fn the_webhook_must_be_https_or_loopback() {
        assert!(Webhook::parse("https://hooks.example.com/x?token=1").is_ok());
        assert!(Webhook::parse("http://127.0.0.1:9/x").is_ok());
        assert!(Webhook::parse("http://localhost:9/x").is_ok());
        let e = Webhook::parse("http://hooks.example.com/x")
            .err()
            .unwrap_or_default();
        assert!(e.contains("loopback"), "{e}");
        assert!(Webhook::parse("ftp://x/").is_err());
        assert_eq!(
            Webhook::parse("https://hooks.example.com/T0/B0/secret?token=1")
                .map(|w| w.shown())
                .ok(),
            Some("https://hooks.example.com".into())
        );
    }
}
