//! Every page of `docs/`: links to other files resolve (and so do their
//! `#anchors`), every page is linked from the index, every ```bash block parses.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::markdown;
use crate::repo_root;
use crate::server::{TempDir, clean_command, run_with_limit};

/// Every `.md` file under `docs/`, sorted.
fn pages() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("a readable directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo_root().join("docs"), &mut out);
    out.sort();
    assert!(!out.is_empty(), "docs/ has no pages");
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn shown(path: &Path) -> String {
    path.strip_prefix(repo_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn links_between_files_resolve() {
    let root = repo_root().canonicalize().unwrap();
    let mut broken = Vec::new();
    for page in pages() {
        let text = read(&page);
        for (line, target) in markdown::links(&text) {
            if target.starts_with("http://")
                || target.starts_with("https://")
                || target.starts_with("mailto:")
            {
                continue;
            }
            let (file, anchor) = match target.split_once('#') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (target.as_str(), None),
            };
            let resolved = if file.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(file)
            };
            let Ok(resolved) = resolved.canonicalize() else {
                broken.push(format!("{}:{line}: {target}: no such file", shown(&page)));
                continue;
            };
            if !resolved.starts_with(&root) {
                broken.push(format!(
                    "{}:{line}: {target}: outside the repository",
                    shown(&page)
                ));
                continue;
            }
            if let Some(anchor) = anchor
                && resolved.extension().is_some_and(|e| e == "md")
                && !markdown::anchors(&read(&resolved))
                    .iter()
                    .any(|a| a == anchor)
            {
                broken.push(format!(
                    "{}:{line}: {target}: no such heading",
                    shown(&page)
                ));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_page_is_linked_from_the_index() {
    let index_path = repo_root().join("docs/README.md");
    let index = read(&index_path);
    let linked: Vec<PathBuf> = markdown::links(&index)
        .into_iter()
        .filter_map(|(_, target)| {
            let file = target.split('#').next().unwrap_or_default();
            repo_root().join("docs").join(file).canonicalize().ok()
        })
        .collect();
    let unlinked: Vec<String> = pages()
        .into_iter()
        .filter(|page| *page != index_path)
        .filter(|page| !linked.contains(&page.canonicalize().unwrap()))
        .map(|page| shown(&page))
        .collect();
    assert!(
        unlinked.is_empty(),
        "pages docs/README.md does not link: {unlinked:?}"
    );
}

#[test]
fn every_bash_block_parses() {
    let dir = TempDir::new("bash-syntax");
    let mut failures = Vec::new();
    for page in pages() {
        for element in markdown::elements(&read(&page)) {
            let markdown::Element::Code { lang, text, line } = element else {
                continue;
            };
            if lang != "bash" {
                continue;
            }
            let script = dir.path().join("block.sh");
            std::fs::write(&script, &text).unwrap();
            let mut bash = clean_command("bash", dir.path());
            bash.arg("-n").arg(&script);
            let done = run_with_limit(bash, dir.path(), Duration::from_secs(10));
            if !done.success {
                failures.push(format!("{}:{line}: {}", shown(&page), done.stderr.trim()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "bash blocks that do not parse:\n{}",
        failures.join("\n")
    );
}
