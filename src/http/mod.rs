//! The HTTP front (`--http`, default `127.0.0.1:7401`): `/metrics`, `/healthz`, `/readyz`,
//! the JSON API under `/api/v1/` (`api.rs`) and the embedded dashboard (`assets.rs`).
//!
//! Like every front it parses and formats only: behaviour is the broker's. Bearer tokens
//! name agents with the same permissions as on QUIC and RESP; with no tokens configured (a
//! loopback-only broker) everything is allowed. Every request body is bounded
//! ([`BODY_BYTES_MAX`]), every list has a count cap, and long reads (blocking group reads,
//! live tails) hold no lock and end when the client goes away or the broker stops.

mod api;
mod assets;
mod extract;
mod json;
mod limit;
mod task;

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::broker::{AuthError, Broker, BrokerError, Principal};

/// Largest request body accepted (a publish batch); larger ones get 413.
pub const BODY_BYTES_MAX: usize = 8 << 20;

/// Longest a blocking group read may wait.
pub const BLOCK_MS_MAX: u64 = 60_000;

/// The shared state of handlers.
#[derive(Clone)]
pub(crate) struct App {
    broker: Broker,
    stop: tokio::sync::watch::Receiver<bool>,
}

/// Binds the HTTP port.
pub async fn bind(broker: &Broker) -> Result<TcpListener, String> {
    let addr = broker.config().http;
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot bind the HTTP port {addr}: {e}"))
}

/// Serves until `stop` turns true; live tails end then too.
pub async fn serve(
    listener: TcpListener,
    broker: Broker,
    stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = limit::Limited::new(listener, broker.clone());
    let app = App {
        broker,
        stop: stop.clone(),
    };
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .nest("/api/v1", api::routes())
        .merge(assets::routes())
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(axum::middleware::from_fn_with_state(app.clone(), count))
        .with_state(app);
    let mut stop = stop;
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
}

async fn count(State(app): State<App>, req: Request, next: Next) -> Response {
    app.broker
        .metrics()
        .http_requests
        .fetch_add(1, Ordering::Relaxed);
    let mut res = next.run(req).await;
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// An error answer: a status and `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn bad(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
    }
}

impl ApiError {
    /// The `{"code", "message"}` object an error body and a batch's refused result carry.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({"code": self.code, "message": self.message})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.json() });
        let mut res = (self.status, axum::Json(body)).into_response();
        match self.status {
            StatusCode::UNAUTHORIZED => {
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"cortex\""),
                );
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        res
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        let (status, code) = match &e {
            BrokerError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            BrokerError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            BrokerError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "cluster_unavailable"),
            BrokerError::DiskFull(_) => (StatusCode::INSUFFICIENT_STORAGE, "disk_full"),
            BrokerError::NoPermission(_) => (StatusCode::FORBIDDEN, "no_permission"),
            BrokerError::Storage(_) | BrokerError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<cortex_storage::Error> for ApiError {
    fn from(e: cortex_storage::Error) -> Self {
        use cortex_storage::Error as E;
        let (status, code) = match &e {
            E::NoSuchStream { .. } | E::NoSuchGroup { .. } | E::NoSuchTask { .. } => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            E::GroupExists { .. }
            | E::TargetExists
            | E::TaskExists { .. }
            | E::TaskFinished { .. } => (StatusCode::CONFLICT, "conflict"),
            E::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            E::Corruption { .. } | E::Storage(_) | E::Unreadable(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
            _ => (StatusCode::BAD_REQUEST, "invalid_argument"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// The caller: the agent its bearer token names, or the open session of a broker without
/// tokens.
pub(crate) fn principal(broker: &Broker, headers: &HeaderMap) -> Result<Principal, ApiError> {
    if let Some(p) = broker.open_session() {
        return Ok(p);
    }
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", m);
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("this broker needs a token: Authorization: Bearer TOKEN"))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| unauthorized("the Authorization header must be 'Bearer TOKEN'"))?;
    broker
        .authenticate(None, token.as_bytes())
        .map_err(|e| match e {
            AuthError::NotConfigured | AuthError::Denied => unauthorized("unknown token"),
        })
}

/// `/metrics`: Prometheus text (0.0.4) by default, OpenMetrics when the scraper asks for
/// it. Needs a valid token when tokens are configured.
async fn metrics(State(app): State<App>, headers: HeaderMap) -> Result<Response, ApiError> {
    principal(&app.broker, &headers)?;
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let b = app.broker.clone();
    let body = tokio::task::spawn_blocking(move || b.render_metrics(openmetrics))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let ct = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE
    };
    Ok(([(header::CONTENT_TYPE, ct)], body).into_response())
}

/// Alive: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready: the store is open and the writer runs (it is not stopping or failed).
async fn readyz(State(app): State<App>) -> Response {
    if app.broker.stopping() {
        (StatusCode::SERVICE_UNAVAILABLE, "stopping\n").into_response()
    } else if app.broker.cluster().is_some_and(|n| n.leader().is_none()) {
        (StatusCode::SERVICE_UNAVAILABLE, "no cluster leader\n").into_response()
    } else if let Some(why) = app.broker.disk().failed {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store failed, reopening once the disk has room: {why}\n"),
        )
            .into_response()
    } else {
        "ready\n".into_response()
    }
}

/// How long a live tail waits for entries before it sends a keep-alive comment.
pub(crate) const TAIL_WAIT: Duration = Duration::from_secs(15);
