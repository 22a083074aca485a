//! `docs/guides/embed-the-domain.md` shows `examples/embedded-registry` as it
//! is, and what it prints is what the built program prints (identifiers and
//! the temporary directory aside). Also: no page, container file or manifest
//! points at a repository address the project does not have.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::markdown;
use crate::server::{TempDir, clean_command, run_with_limit};
use crate::{read_repo_file, repo_root};

const PAGE: &str = "docs/guides/embed-the-domain.md";
const PROGRAM: &str = "examples/embedded-registry/src/main.rs";

/// `EMBEDDED_REGISTRY_BIN`, or `embedded-registry` in the target directory
/// this test binary was built into (cargo builds it for the example's own
/// integration test, or `cargo build -p embedded-registry`).
fn example_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("EMBEDDED_REGISTRY_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let target_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("the test binary lives in <target>/<profile>/deps");
    let binary = target_dir.join(format!("embedded-registry{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build -p embedded-registry` first, or set EMBEDDED_REGISTRY_BIN",
        binary.display()
    );
    binary
}

/// `text` with every UUID written `<id>` and every absolute path `<path>`:
/// what differs from one run to the next.
fn normalized(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| {
            line.split(' ')
                .map(|word| {
                    if uuid::Uuid::parse_str(word).is_ok() {
                        "<id>"
                    } else if word.starts_with('/') {
                        "<path>"
                    } else {
                        word
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[test]
fn the_guide_shows_the_example_program_verbatim() {
    let page = read_repo_file(PAGE);
    let blocks = markdown::code_blocks(&page, "rust");
    assert_eq!(blocks.len(), 1, "{PAGE}: one ```rust block, the program");
    assert!(
        blocks[0] == read_repo_file(PROGRAM),
        "{PAGE}: the ```rust block must be {PROGRAM}, verbatim"
    );
    assert!(
        markdown::code_blocks(&page, "bash")
            .iter()
            .any(|block| block.trim() == "cargo run -p embedded-registry"),
        "{PAGE}: the page must say how to run the example"
    );
}

#[test]
fn the_example_prints_what_the_guide_shows() {
    let dir = TempDir::new("embedded-registry");
    let mut example = clean_command(example_binary(), dir.path());
    example.env("TMPDIR", dir.path());
    let done = run_with_limit(example, dir.path(), Duration::from_secs(120));
    assert!(
        done.success,
        "the example failed\n----- stdout -----\n{}\n----- stderr -----\n{}",
        done.stdout, done.stderr
    );
    let page = read_repo_file(PAGE);
    let shown = markdown::code_blocks(&page, "text");
    let shown = shown
        .first()
        .expect("the example's output, in a ```text block");
    assert_eq!(
        normalized(&done.stdout),
        normalized(shown),
        "{PAGE}: the output shown is not what the example prints"
    );
    // The example removes its store when it is done.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("the test's directory")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name())
        .filter(|name| name.to_string_lossy().starts_with("embedded-registry-"))
        .collect();
    assert!(left.is_empty(), "the example left {left:?} behind");
}

/// The address the workspace once named as its repository: nothing is
/// published there, so nothing may point at it.
const UNPUBLISHED_HOME: &str = "github.com/agentidp";

/// The files a reader follows to find the source: the docs, the container
/// files, the OpenAPI document, the README and every manifest.
fn files_naming_a_home() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("a readable directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let root = repo_root();
    let mut files = vec![root.join("README.md"), root.join("Cargo.toml")];
    for dir in ["docs", "docker", "openapi"] {
        walk(&root.join(dir), &mut files);
    }
    for parent in ["crates", "examples"] {
        for entry in std::fs::read_dir(root.join(parent)).expect("a readable directory") {
            files.push(entry.expect("a directory entry").path().join("Cargo.toml"));
        }
    }
    files.extend(["tests", "bench"].map(|dir| root.join(dir).join("Cargo.toml")));
    files
}

#[test]
fn nothing_points_at_an_unpublished_repository() {
    let files = files_naming_a_home();
    assert!(
        files.iter().any(|f| f.ends_with("docs/quick-start.md")),
        "the walk missed docs/"
    );
    let offenders: Vec<String> = files
        .iter()
        .filter(|file| {
            std::fs::read(file).is_ok_and(|bytes| {
                String::from_utf8_lossy(&bytes)
                    .to_ascii_lowercase()
                    .contains(UNPUBLISHED_HOME)
            })
        })
        .map(|file| {
            file.strip_prefix(repo_root())
                .unwrap_or(file)
                .display()
                .to_string()
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "these files point at {UNPUBLISHED_HOME}, where nothing is published: {offenders:?}"
    );
}
