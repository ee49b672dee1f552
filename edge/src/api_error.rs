//! The one error of the JSON APIs (Frust REST, chat REST, the server API): a status and a body
//! `{"error": <message>, "code": <machine-readable>}` — Frust REST's without `code`, as the
//! original backend answered. What failed underneath is kept as the source and logged, never sent.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// A refused request: a status and a JSON `{"error", "code"}` body (plus `Retry-After` when
/// waiting helps, and any `extra` fields).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<Duration>,
    pub extra: Option<serde_json::Value>,
    pub shape: Shape,
    /// The failure behind a 5xx (a store or bus error).
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// Which fields the body carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `{"error", "code"}`: chat REST and the server API.
    Coded,
    /// `{"error"}` alone: the Frust API's original errors.
    ErrorOnly,
}

impl ApiError {
    /// Keeps `cause` as the source: logged when the error is answered.
    pub fn caused_by(self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        ApiError {
            source: Some(Box::new(cause)),
            ..self
        }
    }

    /// Leaves `code` out of the body (the Frust API's shape).
    pub fn without_code(self) -> Self {
        ApiError {
            shape: Shape::ErrorOnly,
            ..self
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(cause) = &self.source {
            tracing::error!(error = %cause, code = self.code, "{}", self.message);
        }
        let mut body = match self.shape {
            Shape::Coded => json!({ "error": self.message, "code": self.code }),
            Shape::ErrorOnly => json!({ "error": self.message }),
        };
        if let (Some(serde_json::Value::Object(fields)), Some(map)) =
            (self.extra, body.as_object_mut())
        {
            map.extend(fields);
        }
        let mut response = (self.status, Json(body)).into_response();
        if let Some(wait) = self.retry_after {
            // Whole seconds, rounded up: a client that waits that long is served.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

pub type ApiResult = Result<Response, ApiError>;

pub fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        code,
        message: message.into(),
        retry_after: None,
        extra: None,
        shape: Shape::Coded,
        source: None,
    }
}

/// 503: a dependency (the store, the bus, the other edges) failed; `message` says which.
pub fn unavailable(message: impl Into<String>) -> ApiError {
    error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
}

pub fn bad_request(message: impl Into<String>) -> ApiError {
    error(StatusCode::BAD_REQUEST, "bad_request", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(e: ApiError) -> (StatusCode, String) {
        let response = e.into_response();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn bodies_keep_their_api_shape_and_never_the_cause() {
        let cause = std::io::Error::other("disk on fire");
        let frust = unavailable("latest_clicks unavailable")
            .without_code()
            .caused_by(cause);
        assert_eq!(
            std::error::Error::source(&frust).unwrap().to_string(),
            "disk on fire"
        );
        assert_eq!(
            answer(frust).await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error":"latest_clicks unavailable"}"#.to_owned()
            )
        );
        let chat = unavailable("store unavailable").caused_by(std::io::Error::other("x"));
        assert_eq!(
            answer(chat).await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"code":"unavailable","error":"store unavailable"}"#.to_owned()
            )
        );
    }
}
