//! The dashboard: plain HTML, CSS and JavaScript from `web/`, embedded in the binary (no
//! build step, nothing fetched from elsewhere). `/` serves `index.html`.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::Embed;

use super::App;

#[derive(Embed)]
#[folder = "web/"]
struct Web;

pub(super) fn routes() -> Router<App> {
    Router::new()
        .route("/", get(|| async { file("index.html") }))
        .route(
            "/ui/{*path}",
            get(|Path(p): Path<String>| async move { file(&p) }),
        )
}

fn file(path: &str) -> Response {
    match Web::get(path) {
        Some(f) => (
            [
                (header::CONTENT_TYPE, f.metadata.mimetype().to_string()),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'self'; style-src 'self'; img-src 'self' data:".to_string(),
                ),
            ],
            f.data,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}
