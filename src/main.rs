//! The `switchyard` binary: wires roles to adapters. `switchyard` alone runs every role in one
//! process (embedded mode: in-process bus unless SWITCHYARD_NATS is set); `edge`, `worker` and
//! `aggregator` run one role each over NATS (cluster mode).

mod config;
mod dead_letters;
mod import;
mod ops;
mod roles;
mod serve;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use config::{Cli, Command, LogFormat};
use roles::Roles;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Err(why) = cli.common.validate() {
        Cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, why)
            .exit();
    }
    init_logging(cli.common.log_format);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let common = cli.common;
        match cli.command.unwrap_or(Command::All) {
            Command::All => roles::run(common, Roles::ALL).await,
            Command::Edge => roles::run(common, Roles::EDGE).await,
            Command::Worker => roles::run(common, Roles::WORKER).await,
            Command::Aggregator => roles::run(common, Roles::AGGREGATOR).await,
            Command::Migrate => {
                switchyard_store::migrate(&common.store).await?;
                tracing::info!(store = %common.store, "schema is up to date");
                Ok(())
            }
            Command::Token { sub, ttl } => {
                let secret = common
                    .chat
                    .jwt_secret
                    .as_deref()
                    .context("set SWITCHYARD_JWT_SECRET to mint tokens")?;
                println!(
                    "{}",
                    switchyard_edge::chat::auth::mint_hs256(secret, &sub, ttl)?
                );
                Ok(())
            }
            Command::Import { source } => {
                import::run(&common.store, roles::clock(&common), source).await
            }
            Command::DeadLetters { action } => dead_letters::run(&common, action).await,
            Command::Bench(args) => switchyard_loadgen::run(*args, common.chat.jwt_secret).await,
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
