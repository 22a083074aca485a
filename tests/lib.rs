//! What the end-to-end (`e2e/`) and documentation (`docs/`) test binaries share:
//! finding the `idp-server` binary and keeping the developer's configuration
//! out of its environment. The tests themselves live in those directories.

#![expect(
    clippy::expect_used,
    reason = "test support: a missing binary must fail the test loudly"
)]

use std::path::{Path, PathBuf};

/// The line the server prints first on stdout once it accepts connections.
pub const LISTENING_PREFIX: &str = "listening on ";

/// `IDP_SERVER_BIN`, or `idp-server` in the target directory the running test
/// binary was built into (`target/debug/deps/e2e-*` -> `target/debug/idp-server`).
pub fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("IDP_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let target_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in <target>/<profile>/deps");
    let binary = target_dir.join(format!("idp-server{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build -p idp-server` first, or set IDP_SERVER_BIN",
        binary.display()
    );
    binary
}

/// Whether `name` is a variable of the developer's shell that would change
/// the server's configuration behind a test's back.
pub fn inherited_configuration(name: &str) -> bool {
    name.starts_with("IDP_") || ["DATABASE_URL", "REDIS_URL", "RUST_LOG"].contains(&name)
}
