//! The server API: what a backend next to switchyard may do, behind a bearer token on the ops
//! listener. It publishes into both APIs (a Frust message to every client, a chat message into
//! a room), lists connections and online users, and disconnects a Frust session or every
//! connection of a chat user. Requests about connections go to every edge at once
//! (`control.edges`) and each answers for its own, so the answer covers the whole cluster.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use switchyard_bus::TypedBus;
use switchyard_schema::chat::{ErrorCode, Rejection, MAX_ID_CHARS, MAX_MESSAGE_CHARS};
use switchyard_schema::envelope::{ControlReply, ControlRequest, EdgeConnections, FrustOut};
use switchyard_schema::frust::Message;
use switchyard_schema::topics;

use crate::api_error::{bad_request, error, unavailable, ApiError, ApiResult};
use crate::chat::auth::{bearer, constant_time_eq};
use crate::chat::ChatEdge;
use crate::frust::FrustEdge;

/// How long a request to every edge waits for answers. In embedded mode it ends as soon as the
/// one edge answered; over NATS nobody knows how many edges there are, so it waits this long.
pub const EDGE_ANSWER_WAIT: Duration = Duration::from_secs(1);
/// The longest Frust message text (a toast is a line; a popup a paragraph).
const MAX_FRUST_TEXT_CHARS: usize = 2000;
/// Request bodies are a few hundred bytes.
const MAX_BODY: usize = 16 * 1024;

#[derive(Clone)]
struct Api {
    frust: Arc<FrustEdge>,
    chat: Arc<ChatEdge>,
}

/// The routes under `/server`. With no token the API is off, and says how to turn it on.
pub fn routes(frust: Arc<FrustEdge>, chat: Arc<ChatEdge>, token: Option<String>) -> Router {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        let off = || async {
            error(
                StatusCode::NOT_FOUND,
                "disabled",
                "the server API is off: set SWITCHYARD_SERVER_API_TOKEN",
            )
        };
        return Router::new()
            .route("/server", axum::routing::any(off))
            .route("/server/{*rest}", axum::routing::any(off));
    };
    let token: Arc<str> = token.into();
    Router::new()
        .route("/server/connections", get(connections))
        .route("/server/users", get(users))
        .route("/server/frust/messages", post(frust_message))
        .route("/server/chat/rooms/{room_id}/messages", post(chat_message))
        .route(
            "/server/frust/sessions/{session}/disconnect",
            post(disconnect_session),
        )
        .route(
            "/server/chat/users/{user}/disconnect",
            post(disconnect_chat_user),
        )
        .with_state(Api { frust, chat })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(move |req, next| {
            authorized(token.clone(), req, next)
        }))
}

async fn authorized(token: Arc<str>, req: Request, next: Next) -> Response {
    match bearer(req.headers()) {
        Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => next.run(req).await,
        given => {
            let why = match given {
                None => "send `Authorization: Bearer <SWITCHYARD_SERVER_API_TOKEN>`",
                Some(_) => "wrong server API token",
            };
            metrics::counter!("switchyard_rejects_total", "api" => "server", "reason" => "unauthorized")
                .increment(1);
            error(StatusCode::UNAUTHORIZED, "unauthorized", why).into_response()
        }
    }
}

/// Asks every edge and returns what each answered.
async fn ask_edges(api: &Api, request: &ControlRequest) -> Result<Vec<ControlReply>, ApiError> {
    api.frust
        .bus
        .gather_from(&topics::CONTROL_EDGES, request, EDGE_ANSWER_WAIT)
        .await
        .map_err(|e| unavailable(format!("cannot reach the edges: {e}")))
}

async fn every_edges_connections(
    api: &Api,
    user: Option<String>,
) -> Result<Vec<EdgeConnections>, ApiError> {
    let replies = ask_edges(api, &ControlRequest::ListConnections { user }).await?;
    let mut edges: Vec<EdgeConnections> = replies
        .into_iter()
        .filter_map(|reply| match reply {
            ControlReply::Connections(c) => Some(c),
            ControlReply::Disconnected { .. } => None,
        })
        .collect();
    edges.sort_by(|a, b| a.edge.cmp(&b.edge));
    Ok(edges)
}

#[derive(Deserialize)]
struct ConnectionsQuery {
    /// Only the connections of this chat user id or Frust name.
    user: Option<String>,
}

/// `GET /server/connections[?user=]`: every connection, by edge.
async fn connections(State(api): State<Api>, Query(query): Query<ConnectionsQuery>) -> ApiResult {
    let edges = every_edges_connections(&api, query.user).await?;
    let edges: Vec<_> = edges
        .into_iter()
        .map(|e| {
            let truncated = !e.is_complete();
            let frust: Vec<_> = e
                .frust
                .into_iter()
                .map(|(session, name)| json!({ "session": session, "name": name }))
                .collect();
            let chat: Vec<_> = e
                .chat
                .into_iter()
                .map(|(user, connection)| json!({ "user": user, "connection": connection }))
                .collect();
            json!({
                "edge": e.edge,
                "frust": frust,
                "chat": chat,
                "frust_count": e.frust_matched,
                "chat_count": e.chat_matched,
                "truncated": truncated,
            })
        })
        .collect();
    Ok(Json(json!({ "edges": edges })).into_response())
}

/// `GET /server/users`: who is online on each API, with how many connections each has.
async fn users(State(api): State<Api>) -> ApiResult {
    let edges = every_edges_connections(&api, None).await?;
    let mut frust: BTreeMap<String, u64> = BTreeMap::new();
    let mut anonymous = 0u64;
    let mut chat: BTreeMap<String, u64> = BTreeMap::new();
    let complete = edges.iter().all(EdgeConnections::is_complete);
    for edge in edges {
        for (_, name) in edge.frust {
            match name {
                Some(name) => *frust.entry(name).or_default() += 1,
                None => anonymous += 1,
            }
        }
        for (user, _) in edge.chat {
            *chat.entry(user).or_default() += 1;
        }
    }
    let frust: Vec<_> = frust
        .into_iter()
        .map(|(name, sessions)| json!({ "name": name, "sessions": sessions }))
        .collect();
    let chat: Vec<_> = chat
        .into_iter()
        .map(|(user, connections)| json!({ "user": user, "connections": connections }))
        .collect();
    Ok(Json(json!({
        "frust": { "users": frust, "anonymous_sessions": anonymous },
        "chat": { "users": chat },
        // An edge with more connections than one answer holds listed only the first ones.
        "complete": complete,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FrustMessageBody {
    text: String,
    #[serde(default)]
    style: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// `POST /server/frust/messages`: a `message` event (toast or popup) to every Frust client.
async fn frust_message(State(api): State<Api>, body: axum::body::Bytes) -> ApiResult {
    let body: FrustMessageBody = json_body(&body)?;
    let text = body.text.trim();
    if text.is_empty() || text.chars().count() > MAX_FRUST_TEXT_CHARS {
        return Err(bad_request(format!(
            "`text` must have 1 to {MAX_FRUST_TEXT_CHARS} characters"
        )));
    }
    let kind = body.kind.unwrap_or_else(|| "toast".into());
    if kind != "toast" && kind != "popup" {
        return Err(bad_request("`type` is `toast` or `popup`"));
    }
    if body.style.as_ref().is_some_and(|s| s.chars().count() > 100) {
        return Err(bad_request("`style` has at most 100 characters"));
    }
    let message = Message {
        text: text.to_owned(),
        style: body.style.or_else(|| Message::toast(String::new()).style),
        kind,
    };
    api.frust
        .broadcast(&FrustOut::Message(message.clone()))
        .await
        .map_err(|e| unavailable(format!("not published: {e}")))?;
    let sent = json!({ "text": message.text, "style": message.style, "type": message.kind });
    Ok((StatusCode::ACCEPTED, Json(json!({ "message": sent }))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatMessageBody {
    sender_id: String,
    message: String,
}

/// `POST /server/chat/rooms/{room_id}/messages`: a message into a room as `sender_id`, stored
/// and delivered like one sent over `/chat` (the sender need not be a member: the backend
/// speaks for it).
async fn chat_message(
    State(api): State<Api>,
    Path(room_id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let body: ChatMessageBody = json_body(&body)?;
    let sender = body.sender_id.trim();
    if sender.is_empty() || sender.chars().count() > MAX_ID_CHARS {
        return Err(bad_request(format!(
            "`sender_id` must have 1 to {MAX_ID_CHARS} characters"
        )));
    }
    if body.message.is_empty() || body.message.chars().count() > MAX_MESSAGE_CHARS {
        return Err(bad_request(format!(
            "`message` must have 1 to {MAX_MESSAGE_CHARS} characters"
        )));
    }
    let exists = api.chat.rooms.members(&room_id).await.map_err(|e| {
        tracing::error!(error = %e, "server API: room lookup failed");
        unavailable("store unavailable")
    })?;
    if exists.is_none() {
        return Err(error(StatusCode::NOT_FOUND, "not_found", "no such room"));
    }
    let message = crate::chat::packets::send_message(&api.chat, room_id, sender, body.message)
        .await
        .map_err(refused)?;
    Ok((StatusCode::CREATED, Json(json!({ "message": message }))).into_response())
}

fn refused(r: Rejection) -> ApiError {
    let status = match r.code {
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    error(status, r.code.as_str(), r.message)
}

/// `POST /server/frust/sessions/{session}/disconnect`.
async fn disconnect_session(State(api): State<Api>, Path(session): Path<String>) -> ApiResult {
    let request = ControlRequest::DisconnectFrustSession { session };
    disconnected(&api, &request, "no Frust session with this id is connected").await
}

/// `POST /server/chat/users/{user}/disconnect`: every `/chat` connection of the user, on
/// every edge; each closes with code 4003.
async fn disconnect_chat_user(State(api): State<Api>, Path(user): Path<String>) -> ApiResult {
    let request = ControlRequest::DisconnectChatUser { user };
    disconnected(&api, &request, "this user has no chat connection").await
}

/// Sends a disconnect to every edge and reports what each closed (404 when nothing was).
async fn disconnected(api: &Api, request: &ControlRequest, none: &str) -> ApiResult {
    let mut closed = 0;
    let mut edges = Vec::new();
    for reply in ask_edges(api, request).await? {
        if let ControlReply::Disconnected { edge, closed: n } = reply {
            closed += n;
            if n > 0 {
                edges.push(json!({ "edge": edge, "closed": n }));
            }
        }
    }
    if closed == 0 {
        return Err(error(StatusCode::NOT_FOUND, "not_found", none));
    }
    Ok(Json(json!({ "closed": closed, "edges": edges })).into_response())
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("invalid JSON body: {e}")))
}
