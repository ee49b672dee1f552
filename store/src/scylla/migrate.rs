//! Numbered CQL migrations (schema/cql/NNNN_name.cql, embedded at build time), applied by
//! `switchyard migrate` and recorded in the keyspace's `schema_version` table. Every other
//! command checks that record and refuses an older schema.

use std::collections::BTreeSet;
use std::time::Duration;

use ::scylla::client::session::Session;
use ::scylla::statement::Statement;

use super::exec::error;
use super::session;
use super::url::ScyllaUrl;
use crate::{StoreError, StoreResult};

pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub cql: &'static str,
}

/// Append only: a shipped migration is never edited, a change is a new file.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_frust",
        cql: include_str!("../../../schema/cql/0001_frust.cql"),
    },
    Migration {
        version: 2,
        name: "0002_chat",
        cql: include_str!("../../../schema/cql/0002_chat.cql"),
    },
    Migration {
        version: 3,
        name: "0003_chat_owner",
        cql: include_str!("../../../schema/cql/0003_chat_owner.cql"),
    },
    Migration {
        version: 4,
        name: "0004_counted",
        cql: include_str!("../../../schema/cql/0004_counted.cql"),
    },
    Migration {
        version: 5,
        name: "0005_import",
        cql: include_str!("../../../schema/cql/0005_import.cql"),
    },
];

/// The schema version this build reads and writes.
pub fn needed() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

const SCOPE: &str = "switchyard";

/// The migrator's own table, created before anything else.
const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_version (
    scope      text,
    version    int,
    name       text,
    applied_at timestamp,
    PRIMARY KEY ((scope), version)
) WITH CLUSTERING ORDER BY (version DESC)";

/// DDL waits for schema agreement across the cluster: far longer than a data request.
const DDL_TIMEOUT: Duration = Duration::from_secs(120);

/// Creates the keyspace if missing, then applies the migrations it has not recorded.
pub async fn run(url: &ScyllaUrl) -> StoreResult<()> {
    let session = session::connect(url).await?;
    let mut create = format!(
        "CREATE KEYSPACE IF NOT EXISTS {} WITH replication = {}",
        url.keyspace,
        url.replication.to_cql()
    );
    if let Some(enabled) = url.tablets {
        create.push_str(&format!(" AND tablets = {{'enabled': {enabled}}}"));
    }
    ddl(&session, &create).await?;
    session
        .use_keyspace(&url.keyspace, false)
        .await
        .map_err(|e| error("migrate", e))?;
    ddl(&session, VERSION_TABLE).await?;
    let applied = applied_versions(&session).await?;
    let todo = pending(&applied, MIGRATIONS);
    if todo.is_empty() {
        tracing::info!(keyspace = %url.keyspace, version = needed(), "schema is up to date");
    }
    for migration in todo {
        tracing::info!(keyspace = %url.keyspace, migration = migration.name, "applying migration");
        for statement in split_statements(migration.cql) {
            match ddl(&session, &statement).await {
                Err(e) if already_added(&statement, &e) => {
                    tracing::info!(migration = migration.name, "column already added");
                }
                other => other?,
            }
        }
        // Recorded only once every statement of the file went through; a crash before this
        // line re-runs the (idempotent) file next time. A lightweight transaction, on purpose:
        // the store needs them (chat message ids), so a cluster that cannot run them fails
        // here, at migrate time, rather than at the first chat message.
        session
            .query_unpaged(
                "INSERT INTO schema_version (scope, version, name, applied_at) \
                 VALUES (?, ?, ?, toTimestamp(now())) IF NOT EXISTS",
                (SCOPE, migration.version as i32, migration.name),
            )
            .await
            .map_err(lwt_refused)?;
    }
    Ok(())
}

async fn ddl(session: &Session, cql: &str) -> StoreResult<()> {
    let mut statement = Statement::new(cql.to_owned());
    statement.set_request_timeout(Some(DDL_TIMEOUT));
    session
        .query_unpaged(statement, ())
        .await
        .map_err(|e| error("migrate", e))?;
    Ok(())
}

/// An `ALTER TABLE … ADD` that failed because the column exists: a re-run of a migration that
/// got that far before (CQL on ScyllaDB has no `ADD IF NOT EXISTS`).
fn already_added(statement: &str, e: &StoreError) -> bool {
    let words: Vec<String> = statement
        .split_whitespace()
        .take(4)
        .map(str::to_ascii_uppercase)
        .collect();
    let is_add =
        words.len() == 4 && words[0] == "ALTER" && words[1] == "TABLE" && words[3] == "ADD";
    is_add
        && e.to_string()
            .to_lowercase()
            .contains("conflicts with an existing column")
}

/// Older ScyllaDB releases (6.x, early 2025.x) refuse lightweight transactions in tablets
/// keyspaces: say what to do about it.
fn lwt_refused(e: ::scylla::errors::ExecutionError) -> StoreError {
    let text = e.to_string();
    if !text.to_lowercase().contains("tablets") {
        return error("migrate", e);
    }
    StoreError::Scylla {
        op: "migrate",
        source: format!(
            "{text} (this ScyllaDB cannot run lightweight transactions on tablets: drop the \
             keyspace and migrate again with `?tablets=false` in the store URL, or upgrade)"
        )
        .into(),
    }
}

async fn applied_versions(session: &Session) -> StoreResult<BTreeSet<u32>> {
    let rows = session
        .query_unpaged(
            "SELECT version FROM schema_version WHERE scope = ?",
            (SCOPE,),
        )
        .await
        .map_err(|e| error("migrate", e))?
        .into_rows_result()
        .map_err(|e| error("migrate", e))?;
    let versions = rows
        .rows::<(i32,)>()
        .map_err(|e| error("migrate", e))?
        .map(|r| r.map(|(v,)| v.max(0) as u32))
        .collect::<Result<_, _>>()
        .map_err(|e| error("migrate", e))?;
    Ok(versions)
}

/// The schema version a keyspace has (0: no keyspace, or never migrated). Used at `open`.
pub async fn current_version(session: &Session, keyspace: &str) -> StoreResult<u32> {
    let table = session
        .query_unpaged(
            "SELECT table_name FROM system_schema.tables \
             WHERE keyspace_name = ? AND table_name = 'schema_version'",
            (keyspace,),
        )
        .await
        .map_err(|e| error("open", e))?
        .into_rows_result()
        .map_err(|e| error("open", e))?
        .rows_num();
    if table == 0 {
        return Ok(0);
    }
    let row = session
        .query_unpaged(
            format!("SELECT version FROM {keyspace}.schema_version WHERE scope = ? LIMIT 1"),
            (SCOPE,),
        )
        .await
        .map_err(|e| error("open", e))?
        .into_rows_result()
        .map_err(|e| error("open", e))?
        .maybe_first_row::<(i32,)>()
        .map_err(|e| error("open", e))?;
    Ok(row.map_or(0, |(v,)| v.max(0) as u32))
}

/// Refuses a schema older than this build. A newer one is fine: migrations only add, so a
/// build being rolled back or not yet rolled out still finds everything it uses.
pub fn check(found: u32, needed: u32) -> StoreResult<()> {
    if found < needed {
        return Err(StoreError::SchemaTooOld { found, needed });
    }
    if found > needed {
        tracing::info!(
            found,
            needed,
            "schema is newer than this build (rolling upgrade?)"
        );
    }
    Ok(())
}

/// The migrations not recorded yet, in version order.
pub fn pending<'a>(applied: &BTreeSet<u32>, all: &'a [Migration]) -> Vec<&'a Migration> {
    all.iter()
        .filter(|m| !applied.contains(&m.version))
        .collect()
}

/// Splits a CQL file into statements at `;`, dropping `--` and `//` comments; quoted strings
/// (which may hold either) are kept intact.
pub fn split_statements(cql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut chars = cql.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            current.push(c);
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => {
                quote = Some(c);
                current.push(c);
            }
            '-' | '/' if chars.peek() == Some(&c) => {
                for skipped in chars.by_ref() {
                    if skipped == '\n' {
                        current.push('\n');
                        break;
                    }
                }
            }
            ';' => {
                let statement = current.trim();
                if !statement.is_empty() {
                    statements.push(statement.to_owned());
                }
                current.clear();
            }
            _ => current.push(c),
        }
    }
    let rest = current.trim();
    if !rest.is_empty() {
        statements.push(rest.to_owned());
    }
    statements
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_one_to_n_and_all_embedded() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{} out of sequence", m.name);
            assert!(m.name.starts_with(&format!("{:04}_", m.version)));
        }
        assert_eq!(needed(), MIGRATIONS.len() as u32);
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema/cql");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".cql"))
            .collect();
        files.sort();
        let names: Vec<String> = MIGRATIONS
            .iter()
            .map(|m| format!("{}.cql", m.name))
            .collect();
        assert_eq!(
            files, names,
            "every schema/cql file is listed in MIGRATIONS"
        );
    }

    #[test]
    fn migration_statements_are_idempotent_ddl() {
        for m in MIGRATIONS {
            let statements = split_statements(m.cql);
            assert!(!statements.is_empty());
            for s in statements {
                assert!(
                    s.starts_with("CREATE TABLE IF NOT EXISTS ")
                        || s.starts_with("CREATE TYPE IF NOT EXISTS ")
                        || s.starts_with("CREATE INDEX IF NOT EXISTS ")
                        // Re-runs pass through `already_added`.
                        || (s.starts_with("ALTER TABLE ") && s.split_whitespace().nth(3) == Some("ADD")),
                    "{}: not idempotent: {s}",
                    m.name
                );
                assert!(
                    !s.contains("counter"),
                    "{}: no counter columns: {s}",
                    m.name
                );
            }
        }
    }

    #[test]
    fn a_column_added_before_counts_as_applied() {
        let exists = StoreError::Scylla {
            op: "migrate",
            source: "Invalid column name owner because it conflicts with an existing column".into(),
        };
        let other = StoreError::Scylla {
            op: "migrate",
            source: "unconfigured table chat_rooms".into(),
        };
        let add = "ALTER TABLE chat_rooms ADD owner text STATIC";
        assert!(already_added(add, &exists));
        assert!(!already_added(add, &other));
        assert!(!already_added(
            "CREATE TABLE IF NOT EXISTS x (a int PRIMARY KEY)",
            &exists
        ));
    }

    #[test]
    fn splits_statements_and_drops_comments() {
        let cql = "-- header; not a statement\n\
                   CREATE TABLE a (x int PRIMARY KEY) -- trailing; comment\n\
                   WITH comment = 'a;b -- c';\n\
                   // another comment\n\
                   CREATE TABLE b (y int PRIMARY KEY);\n\n;  \n";
        assert_eq!(
            split_statements(cql),
            vec![
                "CREATE TABLE a (x int PRIMARY KEY) \nWITH comment = 'a;b -- c'",
                "CREATE TABLE b (y int PRIMARY KEY)",
            ]
        );
        assert_eq!(split_statements("SELECT 1"), vec!["SELECT 1"]);
        assert!(split_statements("-- only a comment").is_empty());
    }

    #[test]
    fn pending_lists_what_is_not_recorded_in_order() {
        let all = [
            Migration {
                version: 1,
                name: "0001_a",
                cql: "",
            },
            Migration {
                version: 2,
                name: "0002_b",
                cql: "",
            },
            Migration {
                version: 3,
                name: "0003_c",
                cql: "",
            },
        ];
        let versions = |v: Vec<&Migration>| v.iter().map(|m| m.version).collect::<Vec<_>>();
        assert_eq!(versions(pending(&BTreeSet::new(), &all)), vec![1, 2, 3]);
        assert_eq!(versions(pending(&[1].into(), &all)), vec![2, 3]);
        // A file that failed half-way before (1 and 3 recorded, 2 not) is applied again.
        assert_eq!(versions(pending(&[1, 3].into(), &all)), vec![2]);
        assert!(pending(&[1, 2, 3, 4].into(), &all).is_empty());
    }

    #[test]
    fn an_older_schema_is_refused_with_the_fix() {
        let e = check(1, 2).unwrap_err();
        assert!(matches!(
            e,
            StoreError::SchemaTooOld {
                found: 1,
                needed: 2
            }
        ));
        assert_eq!(
            e.to_string(),
            "schema version 1, this build needs 2: run `switchyard migrate`"
        );
        assert!(
            check(0, 2).is_err(),
            "an empty keyspace is older than anything"
        );
        assert!(check(2, 2).is_ok());
        assert!(
            check(3, 2).is_ok(),
            "a newer schema still has what this build uses"
        );
    }
}
