//! Keeps the docs honest: every `src/…` and `tests/…` path named in `docs/*.md` and `README.md`
//! exists, and every `path::item` reference (e.g. `tests/engine.rs::no_grad_tape_records_no_graph`)
//! names an item defined in that file.

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

/// Every `src/…` or `tests/…` token of `text` that starts a word (so `../src/x.rs` counts and
/// `foo/src/x.rs` does not), with trailing punctuation removed.
fn mentions(doc: &str, text: &str) -> Vec<Mention> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let chars: Vec<(usize, char)> = line.char_indices().collect();
        for (k, &(i, _)) in chars.iter().enumerate() {
            let rest = &line[i..];
            if !(rest.starts_with("src/") || rest.starts_with("tests/")) {
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

/// `README.md` and every `docs/*.md`.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut docs = vec![root.join("README.md")];
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
            if !target.exists() {
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
