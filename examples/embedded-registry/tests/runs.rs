//! The example runs to the end. Having an integration test also makes
//! `cargo test`/`cargo nextest run --workspace --all-targets` build the
//! `embedded-registry` executable itself (cargo builds a package's binaries
//! only for its integration tests), which the docs test (`tests/docs/`) runs to
//! compare its output with `docs/guides/embed-the-domain.md`.

use std::process::Command;

#[test]
fn the_example_runs_every_step() {
    let output = Command::new(env!("CARGO_BIN_EXE_embedded-registry"))
        .output()
        .expect("the example starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the example failed ({})\n----- stdout -----\n{stdout}\n----- stderr -----\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.lines().last(), Some("done"), "{stdout}");
}
