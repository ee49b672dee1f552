//! Rooms and membership over REST, with the same JWT as the websocket (or the admin token).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use switchyard_schema::chat::{Room, MAX_ID_CHARS};
use switchyard_schema::new_packet_id;

use super::auth::Caller;
use super::ChatEdge;

const MAX_MEMBERS_PER_REQUEST: usize = 1000;
const MAX_ROOM_NAME_CHARS: usize = 100;

type Ctx = State<Arc<ChatEdge>>;

pub fn routes(chat: Arc<ChatEdge>) -> Router {
    Router::new()
        .route("/api/chat/rooms", post(create_room).get(list_rooms))
        .route("/api/chat/rooms/{room_id}/members", post(add_member))
        .route(
            "/api/chat/rooms/{room_id}/members/{user_id}",
            delete(remove_member),
        )
        .route("/api/chat/rooms/{room_id}", get(get_room))
        .with_state(chat)
}

/// A refused request: status and a JSON `{"error"}` body.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

fn error(status: StatusCode, message: &str) -> ApiError {
    ApiError(status, message.to_owned())
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "chat store failed");
    metrics::counter!("switchyard_store_errors_total", "op" => "chat_rest").increment(1);
    error(StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
}

fn caller(chat: &ChatEdge, headers: &HeaderMap) -> Result<Caller, ApiError> {
    chat.auth.caller(headers).ok_or_else(|| {
        metrics::counter!("switchyard_rejects_total", "api" => "chat_rest", "reason" => "auth")
            .increment(1);
        error(StatusCode::UNAUTHORIZED, "invalid or missing token")
    })
}

fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

fn valid_user_id(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= MAX_ID_CHARS
}

#[derive(Deserialize)]
struct NewRoom {
    name: Option<String>,
    #[serde(default)]
    members: Vec<String>,
}

async fn create_room(State(chat): Ctx, headers: HeaderMap, bytes: Bytes) -> ApiResult {
    let caller = caller(&chat, &headers)?;
    let new: NewRoom = body(&bytes)?;
    if new
        .name
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_ROOM_NAME_CHARS)
    {
        return Err(error(StatusCode::BAD_REQUEST, "name is too long"));
    }
    let mut members = new.members;
    if let Caller::User(me) = &caller {
        members.push(me.clone());
    }
    members.sort();
    members.dedup();
    if members.len() > MAX_MEMBERS_PER_REQUEST || !members.iter().all(|m| valid_user_id(m)) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "members must be 1..=1000 non-empty user ids",
        ));
    }
    if members.is_empty() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "a room needs at least one member",
        ));
    }
    let room = Room {
        room_id: new_packet_id(),
        name: new.name,
        members,
    };
    chat.store.create_room(&room).await.map_err(unavailable)?;
    chat.room_changed(&room.room_id).await;
    Ok((StatusCode::CREATED, Json(room)).into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    user_id: Option<String>,
}

async fn list_rooms(State(chat): Ctx, headers: HeaderMap, Query(q): Query<ListQuery>) -> ApiResult {
    let user = match caller(&chat, &headers)? {
        Caller::User(me) => me,
        Caller::Admin => q
            .user_id
            .ok_or_else(|| error(StatusCode::BAD_REQUEST, "admin: name a user with ?user_id="))?,
    };
    let rooms = chat.store.rooms_of(&user).await.map_err(unavailable)?;
    Ok(Json(rooms).into_response())
}

/// Loads a room the caller may manage: 404 when unknown, 403 when not a member.
async fn managed_room(
    chat: &ChatEdge,
    headers: &HeaderMap,
    room_id: &str,
) -> Result<Room, ApiError> {
    let caller = caller(chat, headers)?;
    let room = chat
        .store
        .room(room_id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "no such room"))?;
    match caller {
        Caller::Admin => Ok(room),
        Caller::User(me) if room.members.contains(&me) => Ok(room),
        Caller::User(_) => Err(error(StatusCode::FORBIDDEN, "not a member of this room")),
    }
}

async fn get_room(State(chat): Ctx, headers: HeaderMap, Path(room_id): Path<String>) -> ApiResult {
    Ok(Json(managed_room(&chat, &headers, &room_id).await?).into_response())
}

#[derive(Deserialize)]
struct NewMember {
    user_id: String,
}

async fn add_member(
    State(chat): Ctx,
    headers: HeaderMap,
    Path(room_id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    managed_room(&chat, &headers, &room_id).await?;
    let new: NewMember = body(&bytes)?;
    if !valid_user_id(&new.user_id) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "user_id must be a non-empty id",
        ));
    }
    chat.store
        .add_member(&room_id, &new.user_id)
        .await
        .map_err(unavailable)?;
    chat.room_changed(&room_id).await;
    let room = chat.store.room(&room_id).await.map_err(unavailable)?;
    let room = room.ok_or_else(|| error(StatusCode::NOT_FOUND, "no such room"))?;
    Ok(Json(room).into_response())
}

async fn remove_member(
    State(chat): Ctx,
    headers: HeaderMap,
    Path((room_id, user_id)): Path<(String, String)>,
) -> ApiResult {
    managed_room(&chat, &headers, &room_id).await?;
    chat.store
        .remove_member(&room_id, &user_id)
        .await
        .map_err(unavailable)?;
    chat.room_changed(&room_id).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
