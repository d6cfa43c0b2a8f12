//! Keeps the docs honest. In `README.md`, `docs/*.md`, `data/README.md` and
//! `experiments/README.md`:
//! - every repository path they name (`src/…`, `tests/…`, `examples/…`, `benches/…`, `tools/…`,
//!   `assets/…`, `experiments/…`, `docs/…`) exists, and every `path::item` reference (e.g.
//!   `tests/engine.rs::no_grad_tape_records_no_graph`) names an item defined in that file;
//! - every relative Markdown link (`[text](results/fmnist-mlp-a/)`) resolves from the document's
//!   folder;
//! - every `--example NAME` and `--bench NAME` they (or the `Run:` lines of the examples,
//!   benchmarks and tools) cite is a cargo target of this package.

use std::fs;
use std::path::{Path, PathBuf};

/// One path mention: the file it was found in, the line, the path and an optional item name.
#[derive(Debug, PartialEq)]
struct Mention {
    doc: String,
    line: usize,
    path: String,
    item: Option<String>,
}

/// Characters a path (or a `::item` suffix) may contain.
fn path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':')
}

/// The top-level folders whose paths the docs may name. (Not `data/`: the docs name folders such
/// as `data/mnist/` that a user creates.)
const ROOTS: [&str; 8] = [
    "src/",
    "tests/",
    "examples/",
    "benches/",
    "tools/",
    "assets/",
    "experiments/",
    "docs/",
];

/// Every token of `text` that starts with one of [`ROOTS`] at the start of a word (so
/// `../src/x.rs` counts and `foo/src/x.rs` does not), with trailing punctuation removed.
fn mentions(doc: &str, text: &str) -> Vec<Mention> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let chars: Vec<(usize, char)> = line.char_indices().collect();
        for (k, &(i, _)) in chars.iter().enumerate() {
            let rest = &line[i..];
            if !ROOTS.iter().any(|r| rest.starts_with(r)) {
                continue;
            }
            let prev = if k == 0 { None } else { Some(chars[k - 1].1) };
            let after_parent = line[..i].ends_with("../");
            if prev.is_some_and(|c| path_char(c) || c.is_alphanumeric()) && !after_parent {
                continue;
            }
            let token: String = rest.chars().take_while(|&c| path_char(c)).collect();
            let token = token.trim_end_matches(['.', ':']);
            let (path, item) = match token.split_once("::") {
                Some((p, item)) => (
                    p,
                    Some(item.rsplit("::").next().unwrap_or(item).to_string()),
                ),
                None => (token, None),
            };
            out.push(Mention {
                doc: doc.to_string(),
                line: n + 1,
                path: path.to_string(),
                item,
            });
        }
    }
    out
}

/// True when `source` defines `name` (a function, type, trait, constant or module).
fn defines(source: &str, name: &str) -> bool {
    [
        "fn", "struct", "enum", "trait", "const", "type", "mod", "static",
    ]
    .iter()
    .any(|kw| {
        let needle = format!("{kw} {name}");
        source.match_indices(&needle).any(|(i, _)| {
            let end = source[i + needle.len()..].chars().next();
            !end.is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
    })
}

/// Where `path` (relative to the repository root) exists: as a file or folder, or, under
/// `examples/` and `benches/`, as a cargo target named without its `.rs`.
fn exists(root: &Path, path: &str) -> bool {
    let targets = path.starts_with("examples/") || path.starts_with("benches/");
    root.join(path).exists() || (targets && root.join(format!("{path}.rs")).is_file())
}

/// The targets of every relative Markdown link `[text](target)` of `text`, with their line,
/// without a `#fragment`; web, mail and same-page links are left out.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for (i, _) in line.match_indices("](") {
            let rest = &line[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = rest[..end].split('#').next().unwrap_or_default();
            let external = ["http://", "https://", "mailto:"]
                .iter()
                .any(|p| target.starts_with(p));
            if !target.is_empty() && !external {
                out.push((n + 1, target.to_string()));
            }
        }
    }
    out
}

/// Every `NAME` in `--example NAME` or `--bench NAME` in `text`, with its line and flag.
fn cargo_targets(text: &str) -> Vec<(usize, &'static str, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for flag in ["--example", "--bench"] {
            for (i, _) in line.match_indices(flag) {
                let rest = &line[i + flag.len()..];
                let name: String = rest
                    .strip_prefix(' ')
                    .unwrap_or_default()
                    .chars()
                    .take_while(|&c| c.is_ascii_alphanumeric() || c == '_')
                    .collect();
                // NOTE: `--example <name>` and `--bench`'s own `--bench` flag name no target.
                if !name.is_empty() && !rest.starts_with("es") {
                    out.push((n + 1, flag, name));
                }
            }
        }
    }
    out
}

/// The example and bench targets of the package: the files of `examples/` and `benches/`,
/// and the `[[example]]` / `[[bench]]` entries of `Cargo.toml` (which may live elsewhere).
fn package_targets(root: &Path) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (flag, dir) in [("--example", "examples"), ("--bench", "benches")] {
        for entry in fs::read_dir(root.join(dir)).expect("the folder exists") {
            let path = entry.expect("readable entry").path();
            if path.extension().is_some_and(|e| e == "rs") {
                let stem = path.file_stem().unwrap_or_default().to_string_lossy();
                out.push((flag, stem.into_owned()));
            }
        }
    }
    let manifest = fs::read_to_string(root.join("Cargo.toml")).expect("readable Cargo.toml");
    let mut section = "";
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if let Some(value) = line.strip_prefix("name = ") {
            let name = value.trim_matches('"').to_string();
            match section {
                "[[example]]" => out.push(("--example", name)),
                "[[bench]]" => out.push(("--bench", name)),
                _ => {}
            }
        }
    }
    out
}

/// The `.rs` files of the examples, benchmarks and tools, whose `Run:` lines cite targets.
fn runnable_sources(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["examples", "benches", "tools"] {
        for entry in fs::read_dir(root.join(dir)).expect("the folder exists") {
            let path = entry.expect("readable entry").path();
            if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// `README.md`, every `docs/*.md`, `data/README.md` and `experiments/README.md`.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut docs = vec![
        root.join("README.md"),
        root.join("data/README.md"),
        root.join("experiments/README.md"),
    ];
    let mut md: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("readable docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    md.sort();
    docs.extend(md);
    docs
}

#[test]
fn scanner_finds_paths_items_and_links() {
    let text = "see `src/a.rs`, [b](../tests/b.rs) and tests/c.rs::d_e.\nnot foo/src/x.rs; \
                `src/curvature/` and `tests/e.rs::Type::method`";
    let got: Vec<(String, Option<String>)> = mentions("t", text)
        .into_iter()
        .map(|m| (m.path, m.item))
        .collect();
    let want = vec![
        ("src/a.rs".to_string(), None),
        ("tests/b.rs".to_string(), None),
        ("tests/c.rs".to_string(), Some("d_e".to_string())),
        ("src/curvature/".to_string(), None),
        ("tests/e.rs".to_string(), Some("method".to_string())),
    ];
    assert_eq!(got, want);
    assert!(defines("fn d_e() {}", "d_e"));
    assert!(!defines("fn d_e2() {}", "d_e"));
}

#[test]
fn every_src_and_tests_path_in_the_docs_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    let mut missing = Vec::new();
    for doc in documents(root) {
        let text = fs::read_to_string(&doc).expect("readable document");
        let name = doc.strip_prefix(root).unwrap_or(&doc).display().to_string();
        for m in mentions(&name, &text) {
            checked += 1;
            let target = root.join(&m.path);
            if !exists(root, &m.path) {
                missing.push(format!("{}:{}: `{}` does not exist", m.doc, m.line, m.path));
                continue;
            }
            if let Some(item) = &m.item {
                let source = fs::read_to_string(&target).unwrap_or_default();
                if !defines(&source, item) {
                    missing.push(format!(
                        "{}:{}: `{}` defines no `{item}`",
                        m.doc, m.line, m.path
                    ));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "stale references in the docs:\n{}",
        missing.join("\n")
    );
    // NOTE: docs/math.md alone names dozens of files and tests; a handful means the scan broke.
    assert!(checked >= 30, "only {checked} paths found in the docs");
}

#[test]
fn link_and_target_scanners_find_what_they_should() {
    let text = "[a](results/x/) and [b](../experiments/y.sh#top), [c](https://e.org) [d](#here)\n\
                `cargo run --release --example 03_mlp_sgd`, `cargo bench --bench engine -- --bench`, \
                `--example <name>`, `--examples`";
    let got = links(text);
    let want = vec![
        (1, "results/x/".to_string()),
        (1, "../experiments/y.sh".to_string()),
    ];
    assert_eq!(got, want);
    let got = cargo_targets(text);
    let want = vec![
        (2, "--example", "03_mlp_sgd".to_string()),
        (2, "--bench", "engine".to_string()),
    ];
    assert_eq!(got, want);
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (mut checked, mut missing) = (0, Vec::new());
    for doc in documents(root) {
        let text = fs::read_to_string(&doc).expect("readable document");
        let dir = doc.parent().expect("a document lives in a folder");
        for (line, target) in links(&text) {
            checked += 1;
            if !dir.join(&target).exists() {
                let name = doc.strip_prefix(root).unwrap_or(&doc).display().to_string();
                missing.push(format!("{name}:{line}: link `{target}` does not resolve"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "broken links in the docs:\n{}",
        missing.join("\n")
    );
    // NOTE: RESULTS.md alone links dozens of run folders and charts; a handful means the scan broke.
    assert!(checked >= 50, "only {checked} links found in the docs");
}

#[test]
fn every_example_and_bench_the_docs_run_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let targets = package_targets(root);
    let (mut checked, mut missing) = (0, Vec::new());
    for file in documents(root).into_iter().chain(runnable_sources(root)) {
        let text = fs::read_to_string(&file).expect("readable file");
        let name = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        for (line, flag, target) in cargo_targets(&text) {
            checked += 1;
            if !targets.iter().any(|(f, t)| *f == flag && *t == target) {
                missing.push(format!("{name}:{line}: `{flag} {target}` is no target"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "commands that name no cargo target:\n{}",
        missing.join("\n")
    );
    assert!(checked >= 10, "only {checked} commands found");
}
