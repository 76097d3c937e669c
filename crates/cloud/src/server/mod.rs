//! The reference cloud server (`ad-sync-cloud serve`): the agent API under `/v1` over HTTPS,
//! and a status page at `/`.
//!
//! Requests are checked here (content type, size, JSON shape, credentials, rate limits) and
//! every failure becomes one of the documented error codes; decisions about keys, agents and
//! changes are `store`'s. Nothing here logs a request body or the Authorization header: bodies
//! carry connect keys and headers carry agent credentials.

pub mod alerts;
pub mod db;
pub mod db_tls;
pub mod listener;
pub mod rules;
pub mod status_page;
pub mod store;
pub mod tls;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use ad_sync_api::api::{
    AckRequest, AckResponse, ChangesResponse, DirectoryRequest, DirectoryResponse, EnrollRequest,
    ErrorBody, ErrorCode, ErrorDetail, Health, HeartbeatRequest, HeartbeatResponse, ImportRequest,
    ImportResponse, KeyCheckRequest, KeyCheckResponse, KeyState, MAX_IMPORT_ITEMS,
};
use ad_sync_api::connect_key::ConnectKey;
use store::{AgentAuth, ApiError, Store, Timing};
use tls::Peer;

/// The largest request body accepted; the biggest legitimate one is an ack of 1,000 results.
pub use ad_sync_api::api::MAX_BODY_BYTES;
pub const MAX_CHANGES_PER_FETCH: i64 = 1000;
pub const MAX_RESULTS_PER_ACK: usize = 1000;
/// A heartbeat's `message` (why the agent is degraded), in characters.
pub const MAX_HEARTBEAT_MESSAGE: usize = 1000;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub db: PathBuf,
    pub listen: SocketAddr,
    pub tls: tls::TlsSource,
    pub timing: Timing,
    pub rate_limit: RateLimit,
    pub limits: listener::Limits,
    /// Where the status page is served (it has no login, so a loopback address only); `None`:
    /// not served.
    pub status_listen: Option<SocketAddr>,
    /// Where alerts are posted (`--alert-webhook`); `None`: no alerts.
    pub alert_webhook: Option<alerts::Webhook>,
}

/// Failed key checks and enrollments (malformed or unknown keys) allowed per client address in
/// each window.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub max_failures: u32,
    pub window: Duration,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            max_failures: 20,
            window: Duration::from_secs(60),
        }
    }
}

struct AppState {
    store: Store,
    timing: Timing,
    limiter: Limiter,
    /// Storage calls in flight: SQLite takes one writer at a time, so more blocking threads
    /// would only queue on its lock while each costs a stack and an allocator arena.
    db_slots: tokio::sync::Semaphore,
}

const DB_SLOTS: usize = 4;

type Shared = Arc<AppState>;

/// A bound, running server.
pub struct Running {
    pub addr: SocketAddr,
    pub ca_file: Option<PathBuf>,
    /// The status page's address, when it is served.
    pub status_addr: Option<SocketAddr>,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Opens the database, binds, and serves until `shutdown` completes.
pub async fn start(
    opts: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Running, String> {
    let store = Store::open(&opts.db).map_err(|e| e.to_string())?;
    let ident = tls::load(&opts.tls)?;
    let tcp = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| {
            format!(
                "--listen {}: cannot listen there: {e}; choose a free port on an address of this host (ports below 1024 need root)",
                opts.listen
            )
        })?;
    let addr = tcp.local_addr().map_err(|e| e.to_string())?;
    let status_tcp = match opts.status_listen {
        Some(a) if !a.ip().is_loopback() => {
            return Err(format!(
                "--status-listen {a}: the status page has no login, so it is served on a loopback address only (like 127.0.0.1:8444); reach it from elsewhere through an SSH tunnel"
            ));
        }
        Some(a) => Some(tokio::net::TcpListener::bind(a).await.map_err(|e| {
            format!("--status-listen {a}: cannot listen there: {e}; choose a free port")
        })?),
        None => None,
    };
    let status_addr = match &status_tcp {
        Some(t) => Some(t.local_addr().map_err(|e| e.to_string())?),
        None => None,
    };
    let state = Arc::new(AppState {
        store,
        timing: opts.timing,
        limiter: Limiter::new(opts.rate_limit),
        db_slots: tokio::sync::Semaphore::new(DB_SLOTS),
    });
    let limits = opts.limits;
    // One shutdown for both listeners.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        // A dropped sender means the server is going away too.
        let _ = rx.wait_for(|s| *s).await;
    };
    if let Some(tcp) = status_tcp {
        let page = Router::new()
            .route("/", get(status))
            .layer(axum::middleware::from_fn(log_request))
            .with_state(state.clone());
        tokio::spawn(listener::serve(
            tcp,
            ident.config.clone(),
            page,
            limits,
            stopped(stop_rx.clone()),
        ));
    }
    if let Some(hook) = opts.alert_webhook.clone() {
        tracing::info!(to = %hook.shown(), "alerts are posted to the webhook");
        let (tx, rx) = tokio::sync::mpsc::channel(1000);
        tokio::spawn(alerts::deliver(hook, rx));
        let watched = state.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            // As often as a heartbeat is due (at least every 5 s, at most every second).
            let every = watched
                .timing
                .heartbeat_interval
                .clamp(Duration::from_secs(1), Duration::from_secs(5));
            let mut limit = alerts::RateLimit::default();
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(every) => {}
                }
                let timing = watched.timing;
                match db(&watched, move |s| watch_once(s, timing)).await {
                    Ok(events) => {
                        let now = ad_sync_api::time_fmt::now_unix();
                        for ev in events.into_iter().filter(|e| limit.admit(e, now)) {
                            if tx.try_send(ev).is_err() {
                                tracing::error!(
                                    "alerts: the delivery queue is full; an alert is dropped"
                                );
                            }
                        }
                    }
                    Err(e) => tracing::warn!("alerts: the agents could not be read: {}", e.message),
                }
            }
        });
    }
    let app = router(state, opts.limits.request_timeout);
    let task = tokio::spawn(listener::serve(
        tcp,
        ident.config,
        app,
        limits,
        stopped(stop_rx),
    ));
    Ok(Running {
        addr,
        ca_file: ident.ca_file,
        status_addr,
        task,
    })
}

/// One look at the agents: the incidents raised and cleared since the last look, recorded, as
/// the events to post. One transaction (`settle_alerts`): of several nodes on one database,
/// one posts each event.
fn watch_once(s: &Store, timing: Timing) -> Result<Vec<alerts::Event>, ApiError> {
    let now = ad_sync_api::time_fmt::now_unix();
    s.settle_alerts(|agents, open| {
        let was: std::collections::BTreeMap<(String, alerts::Kind), i64> = open
            .into_iter()
            .filter_map(|(a, k, at)| alerts::Kind::parse(&k).map(|k| ((a, k), at)))
            .collect();
        let open = alerts::incidents(agents, timing, now);
        let events = alerts::diff(&was, &open, agents, now);
        let raised = events
            .iter()
            .filter_map(|(e, at)| {
                at.map(|at| (e.agent_id.clone(), e.event.as_str().to_string(), at))
            })
            .collect();
        let cleared = events
            .iter()
            .filter(|(_, at)| at.is_none())
            .map(|(e, _)| (e.agent_id.clone(), e.event.as_str().to_string()))
            .collect();
        (
            events.into_iter().map(|(e, _)| e).collect(),
            raised,
            cleared,
        )
    })
    .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))
}

fn router(state: Shared, request_timeout: Duration) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/keys/check", post(check_key))
        .route("/v1/agents/enroll", post(enroll))
        .route("/v1/agents/heartbeat", post(heartbeat))
        .route("/v1/agents/self", delete(deregister).get(agent_self))
        .route("/v1/changes", get(changes))
        .route("/v1/changes/ack", post(ack))
        .route("/v1/import", post(import))
        .route("/v1/source/cursor", get(source_cursor))
        .route("/v1/source/changes", post(source_changes))
        .route("/v1/source/users", get(source_users))
        .route("/v1/source/groups", get(source_groups))
        .route("/v1/source/contacts", get(source_contacts))
        .route("/v1/source/lookup", post(source_lookup))
        .route("/v1/keys/directory", post(directory))
        .fallback(|| async {
            ApiError::new(
                ErrorCode::NotFound,
                "no such API route; the agent API is under /v1 (see docs/cloud-api.md)",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "this route does not take that method (see docs/cloud-api.md)",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(move |req, next| {
            within(request_timeout, req, next)
        }))
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.as_str().into(),
                message: self.message,
            },
        };
        (status, Json(body)).into_response()
    }
}

/// A request's body and its handling within the request timeout (the head has the listener's
/// header timeout): a client that sends its body a byte at a time is answered 408 and the
/// connection closed.
async fn within(limit: Duration, req: Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            let mut r = ApiError::new(
                ErrorCode::RequestTimeout,
                format!(
                    "the request (its body and its handling) took longer than {} s; send it again",
                    limit.as_secs()
                ),
            )
            .into_response();
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        }
    }
}

/// Method, path, status and time of every request; never its body, query values or headers.
async fn log_request(req: Request, next: axum::middleware::Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if status.is_server_error() {
        tracing::warn!(%method, %path, status = status.as_u16(), ms, "request failed");
    } else {
        tracing::debug!(%method, %path, status = status.as_u16(), ms, "request");
    }
    response
}

/// Runs a storage call off the async threads.
async fn db<T: Send + 'static>(
    state: &Shared,
    f: impl FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let interrupted = || {
        ApiError::new(
            ErrorCode::Internal,
            "the request was interrupted; try again",
        )
    };
    let _slot = state.db_slots.acquire().await.map_err(|_| interrupted())?;
    let state = state.clone();
    tokio::task::spawn_blocking(move || f(&state.store))
        .await
        .map_err(|_| interrupted())?
}

/// A JSON body: `application/json`, within the size limit, and of the documented shape.
struct ApiJson<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json_type {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    ErrorCode::BodyTooLarge,
                    format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
                )
            } else {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    "the request body could not be read",
                )
            }
        })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = T::deserialize(&mut de).and_then(|v| de.end().map(|()| v));
        value.map(ApiJson).map_err(|e| {
            use serde_json::error::Category;
            match e.classify() {
                Category::Syntax | Category::Eof | Category::Io => ApiError::new(
                    ErrorCode::MalformedJson,
                    format!(
                        "the body is not valid JSON (line {}, column {})",
                        e.line(),
                        e.column()
                    ),
                ),
                Category::Data => ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("the body does not have the documented shape: {e}"),
                ),
            }
        })
    }
}

/// The calling agent, from `Authorization: Bearer <credential>`.
struct Agent(AgentAuth);

impl FromRequestParts<Shared> for Agent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let credential = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthorized,
                    "this route needs the agent's credential: Authorization: Bearer <credential from enrollment>",
                )
            })?;
        db(state, move |s| s.authenticate(&credential))
            .await?
            .map(Agent)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthorized,
                    "the agent credential is not valid (the agent may have been deregistered); enroll again with a new connect key",
                )
            })
    }
}

// ---- rate limiting -----------------------------------------------------------------------------

/// Counts failed key checks and enrollments per client address in fixed windows. Bounded: old
/// windows are dropped when the table grows.
///
/// Only the answers guessing produces count (`malformed`, `unknown`): a key that is used, expired
/// or for another domain is a real key, and fifty agents racing for one key must all hear
/// "already used", not "slow down".
///
/// Checking and counting are one step: `begin` reserves one of the address's attempts (attempts
/// in flight count against the limit), so concurrent guesses cannot pass the check together.
/// An address over its limit is not locked out for real keys: its request is still looked up,
/// and only an answer guessing would get (`malformed`, `unknown`) becomes `rate_limited`. So one
/// guesser behind a shared NAT does not stop the administrators behind it, and still learns
/// nothing.
struct Limiter {
    limit: RateLimit,
    windows: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
    in_flight: u32,
}

const LIMITER_MAX_ADDRESSES: usize = 100_000;

/// One attempt from an address, in flight until dropped; `finish` says whether it was a
/// guess's failure.
struct Attempt<'a> {
    limiter: &'a Limiter,
    ip: IpAddr,
    /// `Some(seconds to wait)` when the address was over its limit at the start.
    over: Option<u64>,
}

impl Attempt<'_> {
    /// Records the outcome; `Err(seconds)` when a failure must be answered `rate_limited`.
    fn finish(self, failed: bool) -> Result<(), u64> {
        if !failed {
            return Ok(());
        }
        if let Some(w) = self.limiter.lock().get_mut(&self.ip) {
            w.failures = w.failures.saturating_add(1);
        }
        match self.over {
            Some(wait) => {
                tracing::warn!(ip = %self.ip, "key checks rate-limited");
                Err(wait)
            }
            None => Ok(()),
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.limiter.lock().get_mut(&self.ip) {
            w.in_flight = w.in_flight.saturating_sub(1);
        }
    }
}

impl Limiter {
    fn new(limit: RateLimit) -> Self {
        Limiter {
            limit,
            windows: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Window>> {
        // The table holds counts only: a panic while it was held leaves nothing half-done.
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn begin(&self, ip: IpAddr) -> Attempt<'_> {
        let mut windows = self.lock();
        if windows.len() >= LIMITER_MAX_ADDRESSES {
            let window = self.limit.window;
            windows.retain(|_, w| w.start.elapsed() < window || w.in_flight > 0);
        }
        let w = windows.entry(ip).or_insert(Window {
            start: Instant::now(),
            failures: 0,
            in_flight: 0,
        });
        if w.start.elapsed() >= self.limit.window {
            *w = Window {
                start: Instant::now(),
                failures: 0,
                in_flight: w.in_flight,
            };
        }
        let over = (w.failures.saturating_add(w.in_flight) >= self.limit.max_failures).then(|| {
            (self.limit.window.saturating_sub(w.start.elapsed()))
                .as_secs()
                .max(1)
        });
        w.in_flight += 1;
        Attempt {
            limiter: self,
            ip,
            over,
        }
    }
}

fn rate_limited(retry_secs: u64) -> Response {
    let mut resp = ApiError::new(
        ErrorCode::RateLimited,
        format!(
            "too many failed connect key attempts from this address; wait {retry_secs} s, and check the key before retrying"
        ),
    )
    .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_secs));
    resp
}

// ---- handlers ----------------------------------------------------------------------------------

async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        api: ad_sync_api::api::API_VERSION,
    })
}

fn parse_domain(text: &str, field: &str) -> Result<ad_sync_api::dn::Dn, ApiError> {
    ad_sync_api::api::parse_domain_dn(text)
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("{field}: {e}")))
}

async fn check_key(
    State(state): State<Shared>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    ApiJson(req): ApiJson<KeyCheckRequest>,
) -> Response {
    let attempt = state.limiter.begin(peer.ip());
    let domain = match req.domain.as_deref().map(|d| parse_domain(d, "domain")) {
        Some(Err(e)) => return e.into_response(),
        Some(Ok(d)) => Some(d),
        None => None,
    };
    let key = match ConnectKey::parse(&req.key) {
        Ok(k) => k,
        Err(e) => {
            if let Err(wait) = attempt.finish(true) {
                return rate_limited(wait);
            }
            return Json(KeyCheckResponse {
                state: KeyState::Malformed,
                domain: None,
                expires_at: None,
                used_at: None,
                message: e.to_string(),
            })
            .into_response();
        }
    };
    let now = ad_sync_api::time_fmt::now_unix();
    match db(&state, move |s| s.check_key(&key, domain.as_ref(), now)).await {
        Ok(resp) => match attempt.finish(resp.state == KeyState::Unknown) {
            Ok(()) => Json(resp).into_response(),
            Err(wait) => rate_limited(wait),
        },
        Err(e) => e.into_response(),
    }
}

async fn enroll(
    State(state): State<Shared>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    ApiJson(req): ApiJson<EnrollRequest>,
) -> Response {
    let attempt = state.limiter.begin(peer.ip());
    // Everything that can be wrong with the request is found before the key is touched.
    let checked = (|| {
        let domain = parse_domain(&req.domain, "domain")?;
        for (field, value, max) in [
            ("host", &req.host, 255),
            ("version", &req.version, 64),
            ("os", &req.os, 64),
        ] {
            if (field != "os" && value.trim().is_empty()) || value.len() > max {
                return Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("{field}: give 1 to {max} characters"),
                ));
            }
        }
        let public_key = ad_sync_api::sealed::parse_public_key(&req.public_key)
            .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.to_string()))?;
        let key = ConnectKey::parse(&req.key)
            .map_err(|e| ApiError::new(ErrorCode::KeyMalformed, format!("connect key: {e}")))?;
        Ok((domain, public_key, key))
    })();
    let (domain, public_key, key) = match checked {
        Ok(v) => v,
        Err(e) => {
            if let Err(wait) = attempt.finish(e.code == ErrorCode::KeyMalformed) {
                return rate_limited(wait);
            }
            return e.into_response();
        }
    };
    let hint = key.redacted();
    let timing = state.timing;
    let now = ad_sync_api::time_fmt::now_unix();
    let result = db(&state, move |s| {
        s.enroll(
            &key,
            &domain,
            &req.host,
            &req.version,
            &req.os,
            &public_key,
            timing,
            now,
        )
    })
    .await;
    match result {
        Ok(resp) => {
            // A real key: the address's failures do not stand in its way.
            let _ = attempt.finish(false);
            if resp.resumed {
                tracing::info!(agent = %resp.agent_id, domain = %resp.domain, key = %hint, %peer, "agent enrollment resumed (the installer's retry, before the agent's first heartbeat)");
            } else {
                tracing::info!(agent = %resp.agent_id, domain = %resp.domain, key = %hint, %peer, "agent enrolled");
            }
            (StatusCode::CREATED, Json(resp)).into_response()
        }
        Err(e) => {
            if let Err(wait) = attempt.finish(e.code == ErrorCode::KeyUnknown) {
                return rate_limited(wait);
            }
            if e.code != ErrorCode::Internal {
                tracing::info!(key = %hint, %peer, code = e.code.as_str(), "enrollment refused");
            }
            e.into_response()
        }
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message)
}

async fn heartbeat(
    State(state): State<Shared>,
    Agent(agent): Agent,
    ApiJson(req): ApiJson<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    // Bounded, printable fields: they are shown on the status page and in `agents`.
    for (field, value, max) in [
        ("host", Some(req.host.as_str()), 255),
        ("version", Some(req.version.as_str()), 64),
        ("message", req.message.as_deref(), MAX_HEARTBEAT_MESSAGE),
    ] {
        if let Some(v) = value {
            if (field != "message" && v.trim().is_empty()) || v.chars().count() > max {
                return Err(invalid(format!("{field}: give 1 to {max} characters")));
            }
            if v.chars()
                .any(|c| c.is_control() && !(field == "message" && c == '\n'))
            {
                return Err(invalid(format!(
                    "{field}: control characters are not allowed"
                )));
            }
        }
    }
    if !matches!(req.status.as_str(), "" | "ok" | "degraded") {
        return Err(invalid("status: use \"ok\" or \"degraded\""));
    }
    let timing = state.timing;
    let now = ad_sync_api::time_fmt::now_unix();
    db(&state, move |s| s.heartbeat(&agent, &req, timing, now))
        .await
        .map(Json)
}

async fn agent_self(
    State(state): State<Shared>,
    Agent(agent): Agent,
) -> Result<Json<ad_sync_api::api::AgentSelf>, ApiError> {
    let timing = state.timing;
    let now = ad_sync_api::time_fmt::now_unix();
    let row = db(&state, move |s| {
        s.agents()
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?
            .into_iter()
            .find(|a| a.id == agent.agent_id)
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "this agent is not known"))
    })
    .await?;
    let t = ad_sync_api::time_fmt::unix_to_rfc3339;
    Ok(Json(ad_sync_api::api::AgentSelf {
        health: status_page::Health::of(&row, timing, now).label().into(),
        role: if row.primary {
            ad_sync_api::api::Role::Primary
        } else {
            ad_sync_api::api::Role::Standby
        },
        heard_from: row.last_seen > row.enrolled_at,
        enrolled_at: t(row.enrolled_at),
        last_seen: t(row.last_seen),
        agent_id: row.id,
        domain: row.domain,
        host: row.host,
        version: row.version,
    }))
}

async fn deregister(
    State(state): State<Shared>,
    Agent(agent): Agent,
) -> Result<StatusCode, ApiError> {
    let id = agent.agent_id.clone();
    let now = ad_sync_api::time_fmt::now_unix();
    db(&state, move |s| s.deregister(&agent, now)).await?;
    tracing::info!(agent = %id, "agent deregistered");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangesQuery {
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
}

async fn changes(
    State(state): State<Shared>,
    Agent(agent): Agent,
    query: Result<Query<ChangesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ChangesResponse>, ApiError> {
    let Ok(Query(q)) = query else {
        return Err(invalid(
            "query: use ?after=<cursor>&limit=<1..1000>, both whole numbers",
        ));
    };
    let limit = q.limit.unwrap_or(500);
    if q.after < 0 || !(1..=MAX_CHANGES_PER_FETCH).contains(&limit) {
        return Err(invalid(format!(
            "after must be 0 or more and limit 1 to {MAX_CHANGES_PER_FETCH}"
        )));
    }
    db(&state, move |s| s.changes(&agent, q.after, limit))
        .await
        .map(Json)
}

async fn ack(
    State(state): State<Shared>,
    Agent(agent): Agent,
    ApiJson(req): ApiJson<AckRequest>,
) -> Result<Json<AckResponse>, ApiError> {
    if req.results.is_empty() || req.results.len() > MAX_RESULTS_PER_ACK {
        return Err(invalid(format!(
            "results: send 1 to {MAX_RESULTS_PER_ACK} results per request"
        )));
    }
    let now = ad_sync_api::time_fmt::now_unix();
    db(&state, move |s| s.ack(&agent, &req.results, now))
        .await
        .map(Json)
}

async fn import(
    State(state): State<Shared>,
    Agent(agent): Agent,
    ApiJson(mut req): ApiJson<ImportRequest>,
) -> Result<Json<ImportResponse>, ApiError> {
    // GUIDs in one form at the edge (lower case, no braces): a link is found and compared as
    // stored, whatever case an agent sent. One that is not a GUID stays as sent, and the
    // store refuses it by name.
    let normal = |g: &mut String| {
        if let Some(n) = ad_sync_api::guid::normalize_guid_string(g) {
            *g = n;
        }
    };
    req.users.iter_mut().for_each(|u| normal(&mut u.guid));
    req.groups.iter_mut().for_each(|g| normal(&mut g.guid));
    for m in req.memberships.iter_mut() {
        normal(&mut m.group_guid);
        normal(&mut m.member_guid);
    }
    if req.is_empty() || req.len() > MAX_IMPORT_ITEMS {
        return Err(invalid(format!(
            "users, groups, memberships: send 1 to {MAX_IMPORT_ITEMS} items per request"
        )));
    }
    let now = ad_sync_api::time_fmt::now_unix();
    let resp = db(&state, move |s| s.import(&agent, &req, now)).await?;
    Ok(Json(resp))
}

/// The longest DirSync cookie the cloud keeps (Windows' are a few hundred bytes).
const MAX_COOKIE: usize = 16 * 1024;

async fn source_cursor(
    State(state): State<Shared>,
    Agent(agent): Agent,
) -> Result<Json<ad_sync_api::api::SourceCursor>, ApiError> {
    db(&state, move |s| s.source_cursor(&agent)).await.map(Json)
}

async fn source_changes(
    State(state): State<Shared>,
    Agent(agent): Agent,
    ApiJson(mut req): ApiJson<ad_sync_api::api::SourceRequest>,
) -> Result<Json<ad_sync_api::api::SourceResponse>, ApiError> {
    use ad_sync_api::api::MAX_SOURCE_ITEMS;
    if (!req.partial && req.cookie.is_empty()) || req.cookie.len() > MAX_COOKIE {
        return Err(invalid(format!(
            "cookie: send the DirSync cookie this batch ends at (1 to {MAX_COOKIE} characters; only a `partial` batch goes without)"
        )));
    }
    if req.dc.trim().is_empty() {
        return Err(invalid(
            "dc: name the domain controller the changes were read from",
        ));
    }
    if req.users.len() + req.groups.len() + req.contacts.len() > MAX_SOURCE_ITEMS {
        return Err(invalid(format!(
            "users, groups, contacts: send at most {MAX_SOURCE_ITEMS} objects per request, all together"
        )));
    }
    for (i, c) in req.contacts.iter_mut().enumerate() {
        c.guid = guid_param(&format!("contacts[{i}].guid"), &c.guid)?;
    }
    for (i, g) in req.groups.iter_mut().enumerate() {
        g.guid = guid_param(&format!("groups[{i}].guid"), &g.guid)?;
        let lists = [
            ("members", g.members.as_mut()),
            ("added", Some(&mut g.added)),
            ("removed", Some(&mut g.removed)),
        ];
        for (name, list) in lists {
            for (k, m) in list.into_iter().flatten().enumerate() {
                *m = guid_param(&format!("groups[{i}].{name}[{k}]"), m)?;
            }
        }
        if g.members.is_some() && !(g.added.is_empty() && g.removed.is_empty()) {
            return Err(invalid(format!(
                "groups[{i}]: send either `members` (the whole list) or `added`/`removed`, not both"
            )));
        }
    }
    for (i, u) in req.users.iter_mut().enumerate() {
        match ad_sync_api::guid::normalize_guid_string(&u.guid) {
            Some(n) => u.guid = n,
            None => {
                return Err(invalid(format!(
                    "users[{i}].guid `{}` is not an objectGUID (like 0f6b3c2e-8d4a-4f1e-9c7b-2a5d6e8f1a3b)",
                    u.guid
                )));
            }
        }
    }
    let now = ad_sync_api::time_fmt::now_unix();
    db(&state, move |s| s.source_changes(&agent, &req, now))
        .await
        .map(Json)
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceUsersQuery {
    #[serde(default)]
    after: Option<String>,
}

/// A GUID from a request, in the one form the cloud keeps, or the field's error.
fn guid_param(field: &str, g: &str) -> Result<String, ApiError> {
    ad_sync_api::guid::normalize_guid_string(g).ok_or_else(|| {
        invalid(format!(
            "{field} `{g}` is not an objectGUID (like 0f6b3c2e-8d4a-4f1e-9c7b-2a5d6e8f1a3b)"
        ))
    })
}

type AfterQuery = Result<Query<SourceUsersQuery>, axum::extract::rejection::QueryRejection>;

/// `?after=<objectGUID>` of the source lists, checked (absent: the first page).
fn after_param(query: AfterQuery) -> Result<Option<String>, ApiError> {
    let Ok(Query(q)) = query else {
        return Err(invalid(
            "query: use ?after=<objectGUID> (or nothing, for the first page)",
        ));
    };
    q.after.map(|g| guid_param("after", &g)).transpose()
}

async fn source_users(
    State(state): State<Shared>,
    Agent(agent): Agent,
    query: AfterQuery,
) -> Result<Json<ad_sync_api::api::SourceUsers>, ApiError> {
    let after = after_param(query)?;
    db(&state, move |s| s.source_users(&agent, after.as_deref()))
        .await
        .map(Json)
}

async fn source_groups(
    State(state): State<Shared>,
    Agent(agent): Agent,
    query: AfterQuery,
) -> Result<Json<ad_sync_api::api::SourceGroups>, ApiError> {
    let after = after_param(query)?;
    db(&state, move |s| s.source_groups(&agent, after.as_deref()))
        .await
        .map(Json)
}

async fn source_contacts(
    State(state): State<Shared>,
    Agent(agent): Agent,
    query: AfterQuery,
) -> Result<Json<ad_sync_api::api::SourceContacts>, ApiError> {
    let after = after_param(query)?;
    db(&state, move |s| s.source_contacts(&agent, after.as_deref()))
        .await
        .map(Json)
}

async fn source_lookup(
    State(state): State<Shared>,
    Agent(agent): Agent,
    ApiJson(req): ApiJson<ad_sync_api::api::SourceLookup>,
) -> Result<Json<ad_sync_api::api::SourceUsers>, ApiError> {
    use ad_sync_api::api::MAX_SOURCE_ITEMS;
    if req.guids.len() > MAX_SOURCE_ITEMS {
        return Err(invalid(format!(
            "guids: send at most {MAX_SOURCE_ITEMS} per request"
        )));
    }
    let guids = req
        .guids
        .iter()
        .enumerate()
        .map(|(i, g)| guid_param(&format!("guids[{i}]"), g))
        .collect::<Result<Vec<_>, _>>()?;
    db(&state, move |s| s.source_lookup(&agent, &guids))
        .await
        .map(Json)
}

/// The names the preview compares with AD. A malformed or unknown key counts against the
/// caller's address as a failed key check does.
async fn directory(
    State(state): State<Shared>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    ApiJson(req): ApiJson<DirectoryRequest>,
) -> Result<Json<DirectoryResponse>, Response> {
    let attempt = state.limiter.begin(peer.ip());
    let key = match ConnectKey::parse(&req.key) {
        Ok(k) => k,
        Err(e) => {
            return Err(match attempt.finish(true) {
                Err(wait) => rate_limited(wait),
                Ok(()) => ApiError::new(ErrorCode::KeyMalformed, e.to_string()).into_response(),
            });
        }
    };
    let now = ad_sync_api::time_fmt::now_unix();
    match db(&state, move |s| s.directory(&key, now)).await {
        Ok(r) => {
            let _ = attempt.finish(false);
            Ok(Json(r))
        }
        Err(e) => Err(match attempt.finish(e.code == ErrorCode::KeyUnknown) {
            Err(wait) => rate_limited(wait),
            Ok(()) => e.into_response(),
        }),
    }
}

async fn status(State(state): State<Shared>) -> Result<Html<String>, ApiError> {
    let timing = state.timing;
    db(&state, move |s| {
        status_page::render(s, timing, ad_sync_api::time_fmt::now_unix()).map_err(|e| {
            // The path and the database's words stay in the server's log.
            tracing::error!(error = %e, "status page");
            ApiError::new(
                ErrorCode::Internal,
                "the status page could not be read from storage; see the server's log",
            )
        })
    })
    .await
    .map(Html)
}
