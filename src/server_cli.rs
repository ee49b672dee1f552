//! `switchyard server …`: the server API from a shell or a script. Each subcommand is one call
//! to a running switchyard's `/server/…` routes; it prints the JSON answer and exits 1 with the
//! API's error line when the call is refused.

use anyhow::Context;
use clap::{Args, Subcommand};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use switchyard_loadgen::chat::Rest;
use switchyard_loadgen::net::Target;

#[derive(Debug, Args)]
pub struct ServerCli {
    #[command(subcommand)]
    pub action: ServerAction,
    /// Base URL of the listener serving the server API: the ops listener
    /// (SWITCHYARD_OPS_LISTEN) of any edge, or its public one when there is no ops listener.
    #[arg(
        long,
        env = "SWITCHYARD_SERVER_API_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// The token the servers have in SWITCHYARD_SERVER_API_TOKEN.
    #[arg(long, env = "SWITCHYARD_SERVER_API_TOKEN", hide_env_values = true)]
    pub token: String,
}

#[derive(Debug, Subcommand)]
pub enum ServerAction {
    /// Every connection on every edge: Frust sessions and chat connections.
    Connections,
    /// Who is online on each API, with their number of connections.
    Users,
    /// Show a `message` (toast or popup) to every Frust client.
    FrustMessage {
        text: String,
        /// `toast` or `popup`.
        #[arg(long = "type", default_value = "toast")]
        kind: String,
        /// CSS classes the page gives the message (default: the toasts' `medium highlight`).
        #[arg(long)]
        style: Option<String>,
    },
    /// Send a message into a chat room as `--sender` (stored and delivered like any other).
    ChatMessage {
        room_id: String,
        /// The user id the message is from.
        #[arg(long)]
        sender: String,
        message: String,
    },
    /// Disconnect one Frust session (its id as listed by `connections`).
    DisconnectSession { session: String },
    /// Disconnect every chat connection of a user, on every edge (close code 4003).
    DisconnectChatUser { user: String },
}

pub async fn run(cli: ServerCli) -> anyhow::Result<()> {
    let segment = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    let (method, path, body) = match &cli.action {
        ServerAction::Connections => ("GET", "/server/connections".to_owned(), None),
        ServerAction::Users => ("GET", "/server/users".to_owned(), None),
        ServerAction::FrustMessage { text, kind, style } => (
            "POST",
            "/server/frust/messages".to_owned(),
            Some(serde_json::json!({ "text": text, "type": kind, "style": style })),
        ),
        ServerAction::ChatMessage {
            room_id,
            sender,
            message,
        } => (
            "POST",
            format!("/server/chat/rooms/{}/messages", segment(room_id)),
            Some(serde_json::json!({ "sender_id": sender, "message": message })),
        ),
        ServerAction::DisconnectSession { session } => (
            "POST",
            format!("/server/frust/sessions/{}/disconnect", segment(session)),
            None,
        ),
        ServerAction::DisconnectChatUser { user } => (
            "POST",
            format!("/server/chat/users/{}/disconnect", segment(user)),
            None,
        ),
    };
    let target = Target::resolve(&cli.url).await?;
    let mut rest = Rest::new(target);
    let body = body.map(|b| b.to_string());
    let (status, body) = rest
        .call(method, &path, &cli.token, body)
        .await
        .with_context(|| format!("calling the server API at {}", cli.url))?;
    let answer: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()));
    if !(200..300).contains(&status) {
        let why = answer
            .get("error")
            .and_then(|e| e.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| answer.to_string());
        anyhow::bail!("{method} {path} at {} answered {status}: {why}", cli.url);
    }
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}
