//! `switchyard check-config`: everything a server start would check, without starting one. It
//! opens no listener, creates no stream, runs no migration and writes no file: one line per
//! check on stdout (`ok`, `warn`, or `FAIL` with what to fix), exit 1 if any failed.

use std::time::Duration;

use switchyard_edge::chat::auth::{weak_secret, Authenticator};

use crate::config::{CheckConfig, Common, RoleArg};
use crate::roles::{self, Roles};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Warn,
    Fail,
}

/// The checks' lines, and how many failed.
#[derive(Default)]
struct Report {
    lines: Vec<(Outcome, String)>,
}

impl Report {
    fn add(&mut self, outcome: Outcome, check: &str, detail: impl std::fmt::Display) {
        let line = format!("{check}: {detail}");
        let tag = match outcome {
            Outcome::Ok => "ok  ",
            Outcome::Warn => "warn",
            Outcome::Fail => "FAIL",
        };
        println!("{tag} {line}");
        self.lines.push((outcome, line));
    }

    fn result(&mut self, check: &str, result: Result<String, String>) {
        match result {
            Ok(detail) => self.add(Outcome::Ok, check, detail),
            Err(problem) => self.add(Outcome::Fail, check, problem),
        }
    }

    fn failed(&self) -> usize {
        self.lines
            .iter()
            .filter(|(o, _)| *o == Outcome::Fail)
            .count()
    }
}

fn roles_of(role: RoleArg) -> Roles {
    match role {
        RoleArg::All => Roles::ALL,
        RoleArg::Edge => Roles::EDGE,
        RoleArg::Worker => Roles::WORKER,
        RoleArg::Aggregator => Roles::AGGREGATOR,
    }
}

pub async fn run(cmd: CheckConfig, unknown_env: Option<String>) -> anyhow::Result<()> {
    let roles = roles_of(cmd.role);
    let report = check(&cmd.common, roles, unknown_env).await;
    match report.failed() {
        0 => Ok(()),
        n => anyhow::bail!(
            "check-config: {n} problem{} (the FAIL line{} above)",
            if n == 1 { "" } else { "s" },
            if n == 1 { "" } else { "s" }
        ),
    }
}

async fn check(common: &Common, roles: Roles, unknown_env: Option<String>) -> Report {
    let mut report = Report::default();
    // Parsing already refused values out of range (with the variable's name) before we got here.
    report.result(
        "values",
        common
            .validate()
            .map(|()| "every flag and SWITCHYARD_* variable is in range and consistent".into()),
    );
    for warning in unknown_env.into_iter().chain(common.warnings()) {
        report.add(Outcome::Warn, "values", warning);
    }

    let store = &common.store.store;
    report.result(
        "store",
        switchyard_store::check(store)
            .await
            .map_err(|e| format!("{store} (SWITCHYARD_STORE): {e}")),
    );

    report.result("bus", check_bus(common, roles).await);

    if roles.edge {
        check_chat(common, &mut report);
        if let Some(dir) = &common.static_dir {
            report.result(
                "static dir",
                match std::fs::metadata(dir) {
                    Ok(meta) if meta.is_dir() => Ok(format!("{} is served at /", dir.display())),
                    Ok(_) => Err(format!(
                        "{} (SWITCHYARD_STATIC_DIR) is not a directory",
                        dir.display()
                    )),
                    Err(e) => Err(format!("{} (SWITCHYARD_STATIC_DIR): {e}", dir.display())),
                },
            );
        }
    }
    report
}

async fn check_bus(common: &Common, roles: Roles) -> Result<String, String> {
    let Some(urls) = &common.nats else {
        return match roles.is_all() {
            true => Ok("in-process (SWITCHYARD_NATS unset: every role in this process)".into()),
            false => Err(roles::NEEDS_NATS.into()),
        };
    };
    let urls = roles::nats_urls(urls).map_err(|e| e.to_string())?;
    let timeout = Duration::from_secs(common.nats_connect_timeout_secs);
    switchyard_bus::probe_nats(&urls, "switchyard-check-config", timeout)
        .await
        .map(|server| format!("NATS at {} answers: {server}", urls.join(",")))
        .map_err(|e| e.to_string())
}

/// The chat settings and the token keys, as the edge reads them at start.
fn check_chat(common: &Common, report: &mut Report) {
    let config = match roles::chat_config(common) {
        Ok(config) => config,
        Err(e) => {
            return report.add(
                Outcome::Fail,
                "jwt",
                format!("{e:#} (SWITCHYARD_JWT_PUBLIC_KEY)"),
            )
        }
    };
    report.result(
        "chat limits",
        config
            .validate()
            .map(|()| "message, queue, ping and REST limits are consistent".into()),
    );
    match Authenticator::new(&config.auth) {
        Err(e) => report.add(Outcome::Fail, "jwt", format!("{e:#}")),
        Ok(auth) if !auth.enabled() => report.add(
            Outcome::Warn,
            "jwt",
            "neither SWITCHYARD_JWT_SECRET nor SWITCHYARD_JWT_PUBLIC_KEY is set: every chat \
             token is refused",
        ),
        Ok(_) => {
            let mut kinds = Vec::new();
            if config.auth.jwt_secret.is_some() {
                kinds.push("HS256 secret".to_owned());
            }
            if let Some(path) = &common.chat.jwt_public_key {
                kinds.push(format!("public key {}", path.display()));
            }
            report.add(
                Outcome::Ok,
                "jwt",
                format!("tokens are checked with the {}", kinds.join(" and the ")),
            );
            if weak_secret(&config.auth) {
                report.add(
                    Outcome::Warn,
                    "jwt",
                    "SWITCHYARD_JWT_SECRET is shorter than 32 bytes: one token lets anyone \
                     guess it offline; use 32 or more random bytes",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn common(args: &[&str]) -> Common {
        let cli = crate::config::Cli::try_parse_from(
            ["switchyard", "check-config"].iter().chain(args).copied(),
        )
        .unwrap();
        match cli.command {
            Some(crate::config::Command::CheckConfig(c)) => c.common,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_good_config_passes_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sub").join("db.sqlite");
        let store = format!("sqlite://{}", db.display());
        let c = common(&["--store", &store, "--jwt-secret", &"k".repeat(32)]);
        let report = check(&c, Roles::ALL, None).await;
        assert_eq!(report.failed(), 0, "{:?}", report.lines);
        assert!(!db.parent().unwrap().exists(), "nothing created");
    }

    #[tokio::test]
    async fn each_problem_is_one_fail_line_naming_what_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let store = format!("sqlite://{}/db.sqlite", file.display());
        let key = dir.path().join("key.pem");
        std::fs::write(&key, "not a key").unwrap();
        let c = common(&[
            "--store",
            &store,
            "--jwt-public-key",
            key.to_str().unwrap(),
            "--chat-ping-interval-ms",
            "1000",
            "--chat-idle-timeout-ms",
            "500",
        ]);
        let report = check(&c, Roles::EDGE, None).await;
        let fails: Vec<&String> = report
            .lines
            .iter()
            .filter(|(o, _)| *o == Outcome::Fail)
            .map(|(_, l)| l)
            .collect();
        assert_eq!(fails.len(), 4, "{fails:?}");
        assert!(fails[0].starts_with("store:") && fails[0].contains("is not a directory"));
        assert!(fails[1].contains("SWITCHYARD_NATS"), "{}", fails[1]);
        assert!(fails[2].contains("SWITCHYARD_CHAT_IDLE_TIMEOUT_MS"));
        assert!(fails[3].starts_with("jwt:") && fails[3].contains("PEM"));
    }
}
