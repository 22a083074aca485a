//! The operate guide's configuration table is generated from
//! `idp_server::config::VARIABLES`: this test holds it to that, row for row,
//! and prints the table to paste when they differ. `VARIABLES` in turn must
//! cover every setting `idp-server config` prints.

use serde_json::Value;

use crate::markdown;
use crate::read_repo_file;
use crate::server::{TempDir, run_server_command};

const PAGE: &str = "docs/guides/operate.md";

/// The heading the table sits under.
const TABLE_SECTION: &str = "Configuration reference";

const TABLE_HEADER: &str = "| variable | default | meaning |";

/// The table as it must read: one row per entry of `VARIABLES`, in order.
fn expected_table() -> String {
    let mut table = format!("{TABLE_HEADER}\n|---|---|---|\n");
    for (name, default, meaning) in idp_server::config::VARIABLES {
        table.push_str(&format!("| `{name}` | {default} | {meaning} |\n"));
    }
    table
}

/// The first table of the section (its consecutive `|` lines).
fn documented_table(page: &str) -> String {
    let section = markdown::section(page, TABLE_SECTION)
        .unwrap_or_else(|| panic!("{PAGE} has no `## {TABLE_SECTION}`"));
    section
        .lines()
        .skip_while(|line| line.trim() != TABLE_HEADER)
        .take_while(|line| line.starts_with('|'))
        .map(|line| format!("{}\n", line.trim_end()))
        .collect()
}

#[test]
fn operate_guide_lists_exactly_the_configuration_variables() {
    let page = read_repo_file(PAGE);
    let expected = expected_table();
    assert_eq!(
        documented_table(&page),
        expected,
        "{PAGE}: the table under `## {TABLE_SECTION}` must be exactly (paste it):\n\n{expected}"
    );
}

/// The environment variable that sets a key of `idp-server config`'s output.
fn variable_of(key: &str) -> String {
    match key {
        "database_url" | "redis_url" => key.to_uppercase(),
        other => format!("IDP_{}", other.to_uppercase()),
    }
}

#[test]
fn every_printed_setting_has_a_documented_variable() {
    let dir = TempDir::new("config");
    let printed: Value = serde_json::from_str(&run_server_command(dir.path(), &["config"]))
        .expect("`idp-server config` prints JSON");
    let names: Vec<&str> = idp_server::config::VARIABLES
        .iter()
        .map(|(name, _, _)| *name)
        .collect();
    let undocumented: Vec<String> = printed
        .as_object()
        .expect("an object")
        .keys()
        .map(|key| variable_of(key))
        .filter(|variable| !names.contains(&variable.as_str()))
        .collect();
    assert!(
        undocumented.is_empty(),
        "settings `idp-server config` prints that VARIABLES (and so {PAGE}) lacks: {undocumented:?}"
    );
}
