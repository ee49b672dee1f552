//! Unknown `SWITCHYARD_*` environment variables are likely configuration mistakes (a typo such
//! as `SWITCHYARD_STOER` would otherwise be ignored and the default used): warned about at start
//! with the closest known name.

use std::collections::BTreeSet;

/// Variables of the repository's own tooling (test harnesses, scripts, compose), which the
/// processes they start inherit; not settings of the binary.
const TOOLING: [&str; 3] = [
    "SWITCHYARD_BIN",
    "SWITCHYARD_KEEP_STORE",
    "SWITCHYARD_IMAGE",
];
const TOOLING_PREFIXES: [&str; 3] = ["SWITCHYARD_E2E_", "SWITCHYARD_CHAOS_", "SWITCHYARD_SCYLLA_"];

/// Variables renamed since they were released: still read under their old name, with a warning.
const RENAMED: [(&str, &str); 1] = [("SWITCHYARD_OPS_ADDR", "SWITCHYARD_OPS_LISTEN")];

/// Moves each renamed variable to its new name (unless that is set too) and says so. Call it
/// before any thread starts: it changes the process environment.
pub fn adopt_renamed() -> Vec<String> {
    let mut warnings = Vec::new();
    for (old, new) in RENAMED {
        let Some(value) = std::env::var_os(old) else {
            continue;
        };
        if std::env::var_os(new).is_none() {
            std::env::set_var(new, value);
            warnings.push(format!("{old} is now called {new}; read as {new}"));
        } else {
            warnings.push(format!(
                "{old} is ignored: {new} is set (it replaced {old})"
            ));
        }
        std::env::remove_var(old);
    }
    warnings
}

/// Every variable any subcommand reads.
pub fn known(command: &clap::Command) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = command
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    for sub in command.get_subcommands() {
        names.extend(known(sub));
    }
    names
}

/// The first unknown `SWITCHYARD_*` name in `vars`, as a one-line warning.
pub fn check(
    vars: impl IntoIterator<Item = String>,
    known: &BTreeSet<String>,
) -> Result<(), String> {
    let mut unknown: Vec<String> = vars
        .into_iter()
        .filter(|v| v.starts_with("SWITCHYARD_") && !known.contains(v))
        .filter(|v| {
            !TOOLING.contains(&v.as_str()) && !TOOLING_PREFIXES.iter().any(|p| v.starts_with(p))
        })
        .collect();
    unknown.sort();
    let Some(name) = unknown.first() else {
        return Ok(());
    };
    let closest = known
        .iter()
        .min_by_key(|k| distance(name, k))
        .map(|k| format!(" (did you mean {k}?)"))
        .unwrap_or_default();
    let service_links = if name.contains("_SERVICE_") || name.contains("_PORT") {
        "; Kubernetes service links inject such variables: set `enableServiceLinks: false`"
    } else {
        ""
    };
    Err(format!(
        "unknown environment variable {name} is ignored{closest}: unset it or fix its name \
         (`switchyard <command> --help` lists every variable){service_links}"
    ))
}

/// Levenshtein distance (names are short).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn vars(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_typo_names_the_variable_and_the_closest_known_one() {
        let known = known(&crate::config::Cli::command());
        assert!(known.contains("SWITCHYARD_STORE") && known.contains("SWITCHYARD_OPS_LISTEN"));
        let err = check(vars(&["PATH", "SWITCHYARD_STOER"]), &known).unwrap_err();
        assert!(
            err.contains("SWITCHYARD_STOER") && err.contains("did you mean SWITCHYARD_STORE?"),
            "{err}"
        );
        assert!(check(
            vars(&[
                "SWITCHYARD_STORE",
                "SWITCHYARD_BIN",
                "SWITCHYARD_E2E_READY_MS"
            ]),
            &known
        )
        .is_ok());
        let err = check(vars(&["SWITCHYARD_EDGE_SERVICE_HOST"]), &known).unwrap_err();
        assert!(err.contains("enableServiceLinks"), "{err}");
    }
}
