//! Development mode: serves a frontend directory at `/`, with `/` redirecting to `/index.html`.

use std::path::Path;

use axum::response::Redirect;
use axum::routing::get;
use axum::Router;
use tower_http::services::ServeDir;

pub fn serve(router: Router, dir: &Path) -> Router {
    router
        .route("/", get(|| async { Redirect::temporary("/index.html") }))
        .fallback_service(ServeDir::new(dir))
}
