//! The `switchyard` binary: wires roles to adapters. `switchyard` alone runs every role in one
//! process (embedded mode: in-process bus unless SWITCHYARD_NATS is set); `edge`, `worker` and
//! `aggregator` run one role each over NATS (cluster mode).

mod check_config;
mod config;
mod dead_letters;
mod env_check;
mod import;
mod logging;
mod ops;
mod process_stats;
mod roles;
mod serve;
mod server_cli;

use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use clap::Parser;
use config::{Cli, Command, Common, LogFormat};
use roles::Roles;

/// The commit this binary was built from (build.rs: BUILD_COMMIT, else git, else `unknown`).
pub const COMMIT: &str = env!("SWITCHYARD_COMMIT");

/// Every failure ends in one line naming what to fix, never a backtrace (RUST_BACKTRACE is for
/// panics): [`one_line`] joins the error's context chain on that line.
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined with `: `, leaving out a cause its parent already quotes
/// (`sqlite: disk I/O error` is not followed by `disk I/O error` again).
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn run() -> anyhow::Result<()> {
    use clap::error::ErrorKind;
    // Still single-threaded: the environment may change here.
    let renamed = env_check::adopt_renamed();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::InvalidValue | ErrorKind::ValueValidation
            ) =>
        {
            anyhow::bail!(config::bad_value(&e))
        }
        // Help, version and usage mistakes: clap's own output.
        Err(e) => e.exit(),
    };
    let known = env_check::known(&Cli::command());
    let names = std::env::vars_os().filter_map(|(k, _)| k.into_string().ok());
    // Warned about, not refused: a platform may inject variables of its own (Kubernetes
    // service links make SWITCHYARD_PORT and friends for a Service named switchyard).
    let unknown_env = env_check::check(names, &known).err();
    let unknown_env = renamed
        .into_iter()
        .chain(unknown_env)
        .reduce(|a, b| a + "; " + &b);
    let (roles, common) = match cli.command {
        None => (Roles::ALL, Box::new(cli.common)),
        Some(Command::All(c)) => (Roles::ALL, c),
        Some(Command::Edge(c)) => (Roles::EDGE, c),
        Some(Command::Worker(c)) => (Roles::WORKER, c),
        Some(Command::Aggregator(c)) => (Roles::AGGREGATOR, c),
        // No logging: it prints one line per check itself.
        Some(Command::CheckConfig(c)) => {
            return tokio::runtime::Runtime::new()?.block_on(check_config::run(*c, unknown_env))
        }
        Some(other) => return run_tool(other, unknown_env),
    };
    common.validate().map_err(anyhow::Error::msg)?;
    logging::init(common.log_format, roles.label());
    for warning in unknown_env.into_iter().chain(common.warnings()) {
        tracing::warn!("{warning}");
    }
    tokio::runtime::Runtime::new()?.block_on(roles::main(*common, roles))
}

/// The subcommands that are not servers.
fn run_tool(command: Command, unknown_env: Option<String>) -> anyhow::Result<()> {
    logging::init(LogFormat::Text, Roles::NONE.label());
    if let Some(warning) = unknown_env {
        tracing::warn!("{warning}");
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        match command {
            Command::Migrate(store) => {
                switchyard_store::migrate(&store.store)
                    .await
                    .with_context(|| format!("migrating {}", store.store))?;
                tracing::info!(store = %store.store, "schema is up to date");
                Ok(())
            }
            Command::Token { sub, ttl, secret } => {
                let secret = secret
                    .jwt_secret
                    .context("set SWITCHYARD_JWT_SECRET (or --jwt-secret) to mint tokens")?;
                println!(
                    "{}",
                    switchyard_schema::token::mint_hs256(&secret, &sub, ttl)?
                );
                Ok(())
            }
            Command::Import(cmd) => {
                let cmd = *cmd;
                import::run(
                    &cmd.common.store.store,
                    roles::clock(&cmd.common),
                    cmd.source,
                )
                .await
            }
            Command::DeadLetters(cmd) => {
                let common: &Common = &cmd.common;
                dead_letters::run(common, cmd.action).await
            }
            Command::Server(cli) => server_cli::run(*cli).await,
            Command::Bench(bench) => {
                let bench = *bench;
                switchyard_loadgen::run(bench.args, bench.secret.jwt_secret).await
            }
            Command::All(_)
            | Command::Edge(_)
            | Command::Worker(_)
            | Command::Aggregator(_)
            | Command::CheckConfig(_) => {
                unreachable!("servers and check-config are started by run")
            }
        }
    })
}
