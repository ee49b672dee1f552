//! The `switchyard` binary: wires roles to adapters. `switchyard` alone runs everything in one
//! process (embedded mode); the role subcommands are for cluster mode.

mod config;
mod ops;

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use config::{Cli, Command, Common, LogFormat};
use switchyard_aggregator::{Aggregator, AggregatorConfig};
use switchyard_bus::{Bus, InProcessBus};
use switchyard_edge::chat::auth::ChatAuthConfig;
use switchyard_edge::chat::ChatConfig;
use switchyard_edge::{Edge, EdgeConfig};
use switchyard_schema::Clock;
use switchyard_workers::Worker;
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.common.log_format);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        match cli.command.unwrap_or(Command::All) {
            Command::All => run_all(cli.common).await,
            Command::Migrate => {
                switchyard_store::open(&cli.common.store)?;
                tracing::info!(store = %cli.common.store, "schema is up to date");
                Ok(())
            }
            Command::Token { sub, ttl } => {
                let secret = cli
                    .common
                    .jwt_secret
                    .as_deref()
                    .context("set SWITCHYARD_JWT_SECRET to mint tokens")?;
                println!(
                    "{}",
                    switchyard_edge::chat::auth::mint_hs256(secret, &sub, ttl)?
                );
                Ok(())
            }
            Command::Edge | Command::Worker | Command::Aggregator => anyhow::bail!(
                "cluster roles need the NATS bus adapter, which this build does not have yet; \
                 run `switchyard all` for embedded mode"
            ),
        }
    })
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn clock(common: &Common) -> Clock {
    common
        .clock_start
        .map(Clock::starting_at)
        .unwrap_or_else(Clock::system)
}

fn chat_config(common: &Common) -> anyhow::Result<ChatConfig> {
    let jwt_public_key_pem = match &common.jwt_public_key {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
        }
        None => None,
    };
    Ok(ChatConfig {
        auth: ChatAuthConfig {
            jwt_secret: common.jwt_secret.clone().filter(|s| !s.is_empty()),
            jwt_public_key_pem,
            admin_token: common.admin_token.clone(),
        },
        max_frame: common.chat_max_frame.max(256),
        send_queue: common.chat_send_queue.max(16),
    })
}

/// Embedded mode: edge, workers and aggregator in one process over the in-process bus.
async fn run_all(common: Common) -> anyhow::Result<()> {
    let metrics = ops::install_metrics()?;
    let store = switchyard_store::open(&common.store)
        .with_context(|| format!("opening store {}", common.store))?;
    let bus: Arc<dyn Bus> = Arc::new(InProcessBus::new());
    let clock = clock(&common);

    let stop_aggregator = CancellationToken::new();
    let aggregator = tokio::spawn(
        Aggregator::new(
            bus.clone(),
            store.clone(),
            AggregatorConfig {
                clock,
                status_window: Duration::from_millis(common.status_window_ms.max(1)),
                // The in-process streams die with the process: recount from stored rows.
                rebuild_on_start: true,
            },
        )
        .run(stop_aggregator.clone()),
    );
    let stop_worker = CancellationToken::new();
    let worker = tokio::spawn(Worker::new(bus.clone(), store.clone()).run(stop_worker.clone()));

    let edge = Edge::start(
        EdgeConfig {
            edge_id: switchyard_schema::new_packet_id(),
            clock,
            ephemeral_events: common.ephemeral_events.clone(),
            static_dir: common.static_dir.clone(),
            version: format!("switchyard {}", env!("CARGO_PKG_VERSION")),
            chat: chat_config(&common)?,
        },
        bus.clone(),
        store.clone(),
    )
    .await?;
    let ready = ops::Readiness::default();
    let app = ops::routes(metrics, ready.clone()).merge(edge.router.clone());
    let listener = tokio::net::TcpListener::bind(common.listen)
        .await
        .with_context(|| format!("binding {}", common.listen))?;
    tracing::info!(listen = %common.listen, store = %common.store, "switchyard running (embedded mode)");
    ready.set(true);

    let stop_http = CancellationToken::new();
    let server = tokio::spawn(
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(stop_http.clone().cancelled_owned())
        .into_future(),
    );

    shutdown_signal().await;
    let drain = Duration::from_secs(common.drain_timeout_secs);
    tracing::info!(?drain, "draining");
    ready.set(false);
    let drained = tokio::time::timeout(drain, async {
        // Clients first (their disconnects still publish), then the pipeline behind them.
        edge.close_connections().await;
        stop_http.cancel();
        let _ = server.await;
        stop_worker.cancel();
        worker.await??;
        stop_aggregator.cancel();
        aggregator.await??;
        anyhow::Ok(())
    })
    .await;
    edge.stop_tasks();
    match drained {
        Ok(result) => result?,
        Err(_) => tracing::warn!(?drain, "drain did not finish in time; exiting anyway"),
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
