//! docs/architecture.md's topics table names every subject of `topics::catalog()` with its
//! payload type, and nothing else: the map stays true when a topic is added or retyped.

use switchyard_schema::topics::{catalog, CatalogEntry};

/// The (subject, payload) of each row of the table under `## Topics`.
fn documented() -> Vec<CatalogEntry> {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/architecture.md"
    ))
    .expect("docs/architecture.md");
    let section = doc
        .split("\n## Topics\n")
        .nth(1)
        .expect("a `## Topics` section");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|row| {
            let cells: Vec<&str> = row.split(" | ").collect();
            let unquote = |cell: &str| {
                cell.trim_matches(|c| c == '|' || c == ' ')
                    .trim_matches('`')
                    .to_owned()
            };
            CatalogEntry {
                subject: unquote(cells[0]),
                payload: unquote(cells[1]),
            }
        })
        .collect()
}

#[test]
fn the_topics_table_matches_the_catalog() {
    let mut documented = documented();
    let mut catalog = catalog();
    documented.sort();
    catalog.sort();
    assert_eq!(
        documented, catalog,
        "docs/architecture.md's topics table and schema's topics::catalog() differ"
    );
}
