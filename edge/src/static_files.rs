//! Development mode: serves a frontend directory at `/`, with `/` redirecting to `/index.html`,
//! and `/version.json` (the stats page's "Frontend version") like the original's `--dev`: the
//! directory's own file when it has one (a built frontend writes it), else generated.
//! Only files inside the directory are served: `ServeDir` refuses `..`, and a symlink whose
//! target lies outside (resolved before serving) is answered 404 like a missing file.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use switchyard_schema::Clock;
use tower::{Layer, ServiceExt};
use tower_http::services::ServeDir;

pub fn serve(router: Router, dir: &Path, clock: Clock) -> Router {
    // Resolved once: the root a served file must resolve under.
    let root = Arc::new(std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()));
    let confined = axum::middleware::from_fn_with_state(root, confine).layer(ServeDir::new(dir));
    let version_file = dir.join("version.json");
    let files = confined.clone();
    let version = move |request: Request| async move {
        if tokio::fs::metadata(&version_file)
            .await
            .is_ok_and(|m| m.is_file())
        {
            // Through the confinement like any other file (a link out is still refused).
            let Ok(response) = files.oneshot(request).await;
            return response.into_response();
        }
        Json(generated_version(clock)).into_response()
    };
    router
        .route("/", get(|| async { Redirect::temporary("/index.html") }))
        .route("/version.json", get(version))
        .fallback_service(confined)
}

/// What the original's `--dev` answered at `/version.json` when no frontend build wrote the
/// file: the deployed build's keys (`commit_sha`, `timestamp`, both strings), each the current
/// Unix time, so a development frontend always looks new.
fn generated_version(clock: Clock) -> serde_json::Value {
    let now = clock.now().to_string();
    serde_json::json!({ "commit_sha": now, "timestamp": now })
}

async fn confine(State(root): State<Arc<PathBuf>>, request: Request, next: Next) -> Response {
    if escapes(&root, request.uri().path()).await {
        metrics::counter!("switchyard_rejects_total", "api" => "static", "reason" => "outside_dir")
            .increment(1);
        tracing::debug!(
            path = request.uri().path(),
            "static file outside the directory refused"
        );
        return StatusCode::NOT_FOUND.into_response();
    }
    next.run(request).await
}

/// Does `uri_path` resolve (through symlinks) to something outside `root`? Paths that do not
/// resolve are left to `ServeDir`, which answers them 404 (or refuses `..` itself).
async fn escapes(root: &Path, uri_path: &str) -> bool {
    let Ok(decoded) = percent_encoding::percent_decode_str(uri_path).decode_utf8() else {
        return false;
    };
    let relative = Path::new(decoded.trim_start_matches('/'));
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return false; // ServeDir refuses it
    }
    let Ok(real) = tokio::fs::canonicalize(root.join(relative)).await else {
        return false;
    };
    if !real.starts_with(root) {
        return true;
    }
    // A directory is served as its index.html, which may be a link of its own.
    if real.is_dir() {
        if let Ok(index) = tokio::fs::canonicalize(real.join("index.html")).await {
            return !index.starts_with(root);
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_version_has_the_original_keys_as_strings() {
        let v = generated_version(Clock::starting_at(1_600_000_000));
        let commit = v["commit_sha"].as_str().unwrap();
        assert!(commit.starts_with("16000000"), "{v}");
        assert!(v["timestamp"].is_string());
        assert_eq!(v.as_object().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn links_out_of_the_directory_escape_links_inside_do_not() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
        let site = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(site.path()).unwrap();
        std::fs::write(root.join("index.html"), "hi").unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), root.join("leak.txt"))
            .unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("outdir")).unwrap();
        std::os::unix::fs::symlink(root.join("index.html"), root.join("alias.html")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret.txt"),
            root.join("sub").join("index.html"),
        )
        .unwrap();

        assert!(escapes(&root, "/leak.txt").await);
        assert!(escapes(&root, "/outdir/secret.txt").await);
        assert!(
            escapes(&root, "/out%64ir/secret.txt").await,
            "percent-encoded"
        );
        assert!(
            escapes(&root, "/sub/").await,
            "a directory's index.html links out"
        );
        assert!(!escapes(&root, "/alias.html").await);
        assert!(!escapes(&root, "/index.html").await);
        assert!(!escapes(&root, "/missing.html").await);
        assert!(!escapes(&root, "/../etc/passwd").await, "left to ServeDir");
    }
}
