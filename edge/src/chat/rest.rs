//! Rooms and membership over REST, with the same JWT as the websocket (or the admin token).
//!
//! Who may do what: any member (or the admin) reads a room, lists its members and adds members;
//! the owner (its creator) or the admin removes others and deletes the room; anyone may remove
//! themselves (leave). An owner who leaves still owns the room. Every call passes the per-IP and
//! per-user quotas first; creating rooms also takes from the creator's room quota; rooms have a
//! member cap and users a rooms cap. Lists are paged by cursor (`Link: <…>; rel="next"`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use switchyard_schema::chat::{Room, MAX_ID_CHARS};
use switchyard_schema::new_packet_id;
use switchyard_store::{Page, StoreError};

use super::auth::Caller;
use super::ChatEdge;
use crate::api_error::{bad_request, error, unavailable, ApiError, ApiResult};

const MAX_ROOM_NAME_CHARS: usize = 100;
/// Page size of lists when the caller names none, and the largest one may ask for.
pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 100;
/// Users named in a refusal for being in too many rooms (the rest are counted).
const NAMED_IN_REFUSAL: usize = 10;

type Ctx = State<Arc<ChatEdge>>;

pub fn routes(chat: Arc<ChatEdge>) -> Router {
    Router::new()
        .route("/api/chat/rooms", post(create_room).get(list_rooms))
        .route(
            "/api/chat/rooms/{room_id}",
            get(get_room).delete(delete_room),
        )
        .route(
            "/api/chat/rooms/{room_id}/members",
            post(add_member).get(list_members),
        )
        .route(
            "/api/chat/rooms/{room_id}/members/{user_id}",
            delete(remove_member),
        )
        .with_state(chat)
}

fn forbidden(message: &str) -> ApiError {
    error(StatusCode::FORBIDDEN, "forbidden", message)
}

fn not_found() -> ApiError {
    error(StatusCode::NOT_FOUND, "not_found", "no such room")
}

/// The store failed: 503, the cause logged.
fn store_failed(e: StoreError) -> ApiError {
    unavailable("store unavailable").caused_by(e)
}

/// A limit refused the request: counted, logged once per limit and interval.
fn limited(refusal: ApiError, who: &str) -> ApiError {
    metrics::counter!("switchyard_rejects_total", "api" => "chat_rest", "reason" => refusal.code)
        .increment(1);
    if let Some(suppressed) = crate::refusals::due("chat_rest", refusal.code) {
        tracing::warn!(
            limit = refusal.code,
            who,
            suppressed,
            "chat REST limit hit: {}",
            refusal.message
        );
    }
    refusal
}

fn rate_limited(code: &'static str, what: &str, wait: Duration) -> ApiError {
    ApiError {
        retry_after: Some(wait),
        ..error(
            StatusCode::TOO_MANY_REQUESTS,
            code,
            format!("{what}; retry in {} ms", wait.as_millis().max(1)),
        )
    }
}

/// The caller of a request that passed the per-IP quota, authentication and the per-user quota.
struct Admitted(Caller);

impl FromRequestParts<Arc<ChatEdge>> for Admitted {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, chat: &Arc<ChatEdge>) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        let ip = chat.limits.client_ip(peer, &parts.headers);
        if let Err(wait) = chat.quotas.ip(ip) {
            let refusal = rate_limited("rate_ip", "too many requests from this address", wait);
            return Err(limited(refusal, &ip.to_string()));
        }
        let caller = caller(chat, &parts.headers)?;
        if let Caller::User(me) = &caller {
            if let Err(wait) = chat.quotas.user(me) {
                let refusal = rate_limited("rate_user", "too many requests from this user", wait);
                return Err(limited(refusal, me));
            }
        }
        Ok(Admitted(caller))
    }
}

fn caller(chat: &ChatEdge, headers: &HeaderMap) -> Result<Caller, ApiError> {
    chat.auth.caller(headers).ok_or_else(|| {
        metrics::counter!("switchyard_rejects_total", "api" => "chat_rest", "reason" => "auth")
            .increment(1);
        error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "invalid or missing token",
        )
    })
}

fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| bad_request(format!("invalid JSON body: {e}")))
}

fn valid_user_id(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= MAX_ID_CHARS
}

/// The caller may manage `room` as its owner (or the admin).
fn owns(caller: &Caller, room: &Room) -> bool {
    match caller {
        Caller::Admin => true,
        Caller::User(me) => room.owner.as_ref() == Some(me),
    }
}

#[derive(Deserialize)]
struct NewRoom {
    name: Option<String>,
    #[serde(default)]
    members: Vec<String>,
}

async fn create_room(State(chat): Ctx, Admitted(caller): Admitted, bytes: Bytes) -> ApiResult {
    let new: NewRoom = body(&bytes)?;
    if new
        .name
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_ROOM_NAME_CHARS)
    {
        return Err(bad_request("name is too long"));
    }
    let mut members = new.members;
    let owner = match &caller {
        Caller::User(me) => {
            members.push(me.clone());
            Some(me.clone())
        }
        Caller::Admin => None,
    };
    members.sort();
    members.dedup();
    if !members.iter().all(|m| valid_user_id(m)) {
        return Err(bad_request(format!(
            "members must be non-empty user ids of at most {MAX_ID_CHARS} characters"
        )));
    }
    if members.is_empty() {
        return Err(bad_request("a room needs at least one member"));
    }
    let who = owner.as_deref().unwrap_or("admin");
    let cap = chat.config.rest.max_room_members;
    if members.len() > cap {
        let refusal = error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_members",
            format!(
                "a room has at most {cap} members; this one would have {}",
                members.len()
            ),
        );
        return Err(limited(refusal, who));
    }
    // The quota before the member counts: an over-quota flood costs no store reads. (A request
    // then refused for a full member still used up its creation.)
    if let Some(me) = &owner {
        if let Err(wait) = chat.quotas.create_room(me) {
            let refusal = rate_limited("room_quota", "this user created rooms too quickly", wait);
            return Err(limited(refusal, me));
        }
    }
    let _writes = chat.membership_writes.lock().await;
    refuse_users_at_room_cap(&chat, &members, who).await?;
    let room = Room {
        room_id: new_packet_id(),
        name: new.name,
        owner,
        members,
    };
    chat.store.create_room(&room).await.map_err(store_failed)?;
    chat.room_changed(&room.room_id).await;
    Ok((StatusCode::CREATED, Json(room)).into_response())
}

/// 409 naming the users already in as many rooms as a user may be in.
async fn refuse_users_at_room_cap(
    chat: &ChatEdge,
    users: &[String],
    who: &str,
) -> Result<(), ApiError> {
    let cap = chat.config.rest.max_rooms_per_user;
    let counts = chat.store.room_counts(users).await.map_err(store_failed)?;
    let full: Vec<&String> = users
        .iter()
        .zip(counts)
        .filter(|(_, n)| *n >= cap as u64)
        .map(|(u, _)| u)
        .collect();
    if full.is_empty() {
        return Ok(());
    }
    let refusal = ApiError {
        extra: Some(json!({
            "users": full.iter().take(NAMED_IN_REFUSAL).collect::<Vec<_>>(),
            "user_count": full.len(),
        })),
        ..error(
            StatusCode::CONFLICT,
            "too_many_rooms",
            format!(
                "{} of these users {} already in {cap} rooms, the most a user may be in",
                full.len(),
                if full.len() == 1 { "is" } else { "are" }
            ),
        )
    };
    Err(limited(refusal, who))
}

#[derive(Deserialize)]
struct ListQuery {
    user_id: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `limit` as asked (1..=MAX_PAGE), or the default page.
fn page_limit(limit: Option<&str>) -> Result<u32, ApiError> {
    let Some(limit) = limit else {
        return Ok(DEFAULT_PAGE);
    };
    limit
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_PAGE).contains(n))
        .ok_or_else(|| bad_request(format!("limit must be a number from 1 to {MAX_PAGE}")))
}

/// A JSON array of the page's items, with a `Link: <…>; rel="next"` header unless it is the last.
fn paged<T: serde::Serialize>(page: Page<T>, path: &str, limit: u32, extra: &str) -> Response {
    let mut response = Json(page.items).into_response();
    if let Some(next) = page.next {
        let link = format!(
            "<{path}?limit={limit}&cursor={}{extra}>; rel=\"next\"",
            query_escape(&next)
        );
        if let Ok(value) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    response
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn list_rooms(
    State(chat): Ctx,
    Admitted(caller): Admitted,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    let limit = page_limit(q.limit.as_deref())?;
    let (user, extra) = match caller {
        Caller::User(me) => (me, String::new()),
        Caller::Admin => {
            let user = q
                .user_id
                .ok_or_else(|| bad_request("admin: name a user with ?user_id="))?;
            let extra = format!("&user_id={}", query_escape(&user));
            (user, extra)
        }
    };
    let page = chat
        .store
        .rooms_page(&user, q.cursor.as_deref(), limit)
        .await
        .map_err(store_failed)?;
    Ok(paged(page, "/api/chat/rooms", limit, &extra))
}

/// Loads a room the caller may see: 404 when unknown, 403 unless a member, its owner or the
/// admin.
async fn visible_room(chat: &ChatEdge, caller: &Caller, room_id: &str) -> Result<Room, ApiError> {
    let room = chat
        .store
        .room(room_id)
        .await
        .map_err(store_failed)?
        .ok_or_else(not_found)?;
    match caller {
        Caller::User(me) if !room.members.contains(me) && !owns(caller, &room) => {
            Err(forbidden("not a member of this room"))
        }
        _ => Ok(room),
    }
}

async fn get_room(
    State(chat): Ctx,
    Admitted(caller): Admitted,
    Path(room_id): Path<String>,
) -> ApiResult {
    Ok(Json(visible_room(&chat, &caller, &room_id).await?).into_response())
}

async fn list_members(
    State(chat): Ctx,
    Admitted(caller): Admitted,
    Path(room_id): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    let limit = page_limit(q.limit.as_deref())?;
    // Authorized from the membership cache: paging a big room does not re-read all of it.
    let room = chat
        .rooms
        .members(&room_id)
        .await
        .map_err(store_failed)?
        .ok_or_else(not_found)?;
    if let Caller::User(me) = &caller {
        if !room.contains(me) && room.owner.as_ref() != Some(me) {
            return Err(forbidden("not a member of this room"));
        }
    }
    let page = chat
        .store
        .members_page(&room_id, q.cursor.as_deref(), limit)
        .await
        .map_err(store_failed)?;
    let path = format!("/api/chat/rooms/{}/members", query_escape(&room_id));
    Ok(paged(page, &path, limit, ""))
}

#[derive(Deserialize)]
struct NewMember {
    user_id: String,
}

async fn add_member(
    State(chat): Ctx,
    Admitted(caller): Admitted,
    Path(room_id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let new: NewMember = body(&bytes)?;
    let _writes = chat.membership_writes.lock().await;
    let room = visible_room(&chat, &caller, &room_id).await?;
    if !valid_user_id(&new.user_id) {
        return Err(bad_request("user_id must be a non-empty id"));
    }
    if room.members.contains(&new.user_id) {
        return Ok(Json(room).into_response());
    }
    let who = match &caller {
        Caller::User(me) => me.as_str(),
        Caller::Admin => "admin",
    };
    let cap = chat.config.rest.max_room_members;
    if room.members.len() >= cap {
        let refusal = error(
            StatusCode::CONFLICT,
            "room_full",
            format!("this room already has {cap} members, the most a room may have"),
        );
        return Err(limited(refusal, who));
    }
    refuse_users_at_room_cap(&chat, std::slice::from_ref(&new.user_id), who).await?;
    chat.store
        .add_member(&room_id, &new.user_id)
        .await
        .map_err(store_failed)?;
    chat.room_changed(&room_id).await;
    let room = chat.store.room(&room_id).await.map_err(store_failed)?;
    Ok(Json(room.ok_or_else(not_found)?).into_response())
}

async fn remove_member(
    State(chat): Ctx,
    Admitted(caller): Admitted,
    Path((room_id, user_id)): Path<(String, String)>,
) -> ApiResult {
    let room = visible_room(&chat, &caller, &room_id).await?;
    let leaving = matches!(&caller, Caller::User(me) if *me == user_id);
    if !leaving && !owns(&caller, &room) {
        return Err(forbidden(
            "only the room's owner removes others; members may remove themselves",
        ));
    }
    chat.store
        .remove_member(&room_id, &user_id)
        .await
        .map_err(store_failed)?;
    chat.room_changed(&room_id).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_room(
    State(chat): Ctx,
    Admitted(caller): Admitted,
    Path(room_id): Path<String>,
) -> ApiResult {
    let room = visible_room(&chat, &caller, &room_id).await?;
    if !owns(&caller, &room) {
        return Err(forbidden("only the room's owner may delete it"));
    }
    chat.store
        .delete_room(&room_id)
        .await
        .map_err(store_failed)?;
    chat.room_changed(&room_id).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_limits_are_checked_not_clamped() {
        assert_eq!(page_limit(None).unwrap(), DEFAULT_PAGE);
        assert_eq!(page_limit(Some("1")).unwrap(), 1);
        assert_eq!(page_limit(Some("100")).unwrap(), MAX_PAGE);
        for bad in ["0", "101", "-1", "ten", ""] {
            assert!(page_limit(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn cursors_are_escaped_in_links() {
        assert_eq!(query_escape("0199-ab_c.~"), "0199-ab_c.~");
        assert_eq!(query_escape("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
