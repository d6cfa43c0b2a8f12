//! Size limits of STYLE.md and issue 15: no function in `src/` over 80 lines, no test file over
//! 500 lines. The few that exceed them today are listed in [`KNOWN_FUNCTIONS`] and
//! [`KNOWN_TEST_FILES`]; nothing new may join them, and an entry must go once its function or file
//! fits.
//!
//! A function's length runs from its `fn` line to the `}` at the same indentation, which is where
//! rustfmt (checked by CI) always puts it.

use std::fs;
use std::path::{Path, PathBuf};

/// Longest function in `src/`, in lines from the `fn` line to its closing brace.
const MAX_FUNCTION_LINES: usize = 80;
/// Longest file in `tests/`.
const MAX_TEST_FILE_LINES: usize = 500;

/// Functions over the limit when the check was written (`file::name`); being restructured.
const KNOWN_FUNCTIONS: [&str; 0] = [];

/// Test files over the limit (none since issue 15 §4 ordered the tests by identity).
const KNOWN_TEST_FILES: [&str; 0] = [];

/// Fails for an offender (`(key, description)`) that `known` does not list, and for a `known`
/// key that no longer offends, so the list only shrinks.
fn check_against_known(over: &[(String, String)], known: &[&str], what: &str) {
    let new: Vec<&str> = (over.iter())
        .filter(|(key, _)| !known.contains(&key.as_str()))
        .map(|(_, description)| description.as_str())
        .collect();
    assert!(new.is_empty(), "{what}:\n{}", new.join("\n"));
    let fixed: Vec<&str> = (known.iter().copied())
        .filter(|key| !over.iter().any(|(k, _)| k == key))
        .collect();
    assert!(
        fixed.is_empty(),
        "within the limit now (or gone), so remove from the known list: {fixed:?}"
    );
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).expect("readable folder") {
        let path = entry.expect("readable entry").path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The name of the function `line` declares, if it does (`pub(crate) unsafe fn name…`).
fn declared_fn(line: &str) -> Option<&str> {
    let mut rest = line.trim_start();
    for qualifier in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
    ] {
        rest = rest.strip_prefix(qualifier).unwrap_or(rest);
    }
    let rest = rest.strip_prefix("fn ")?;
    let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
    Some(&rest[..end]).filter(|name| !name.is_empty())
}

/// `(name, first line, length in lines)` of every function with a body in `source`.
fn functions(source: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = source.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = declared_fn(line) else {
            continue;
        };
        // The signature ends at the first line ending in `{` (a body) or `;` (no body).
        let Some(open) = (i..lines.len()).find(|&j| {
            let l = lines[j].trim_end();
            l.ends_with('{') || l.ends_with(';') || l.ends_with('}')
        }) else {
            continue;
        };
        let opened = lines[open].trim_end();
        if !opened.ends_with('{') {
            continue; // a declaration, or a body on one line
        }
        let indent = &line[..line.len() - line.trim_start().len()];
        let close = format!("{indent}}}");
        let end = (open + 1..lines.len())
            .find(|&j| lines[j] == close)
            .unwrap_or_else(|| panic!("no closing brace for `fn {name}` at line {}", i + 1));
        out.push((name.to_string(), i + 1, end - i + 1));
    }
    out
}

#[test]
fn the_scanner_measures_functions_from_fn_to_closing_brace() {
    let source = "impl A {\n    pub(crate) fn one(&self) -> u8 {\n        let x = {\n            1\n        };\n        x\n    }\n    fn decl(&self);\n    fn short(&self) {}\n}\nfn two<T>(\n    t: T,\n) {\n}\n";
    assert_eq!(
        functions(source),
        vec![("one".to_string(), 2, 6), ("two".to_string(), 11, 4)]
    );
}

#[test]
fn no_new_function_in_src_exceeds_80_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (mut over, mut counted) = (Vec::new(), 0);
    for file in rust_files(&root.join("src")) {
        let rel = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        let source = fs::read_to_string(&file).expect("readable source");
        for (name, line, length) in functions(&source) {
            counted += 1;
            if length > MAX_FUNCTION_LINES {
                let description = format!("{rel}:{line}: fn {name} has {length} lines");
                over.push((format!("{rel}::{name}"), description));
            }
        }
    }
    let what = format!("functions over {MAX_FUNCTION_LINES} lines; split them into named steps");
    check_against_known(&over, &KNOWN_FUNCTIONS, &what);
    // NOTE: src/ holds hundreds of functions; a handful means the scanner broke.
    assert!(counted > 300, "only {counted} functions found in src/");
}

#[test]
fn no_new_test_file_exceeds_500_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut over = Vec::new();
    for file in rust_files(&root.join("tests")) {
        let rel = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        let lines = fs::read_to_string(&file)
            .expect("readable test")
            .lines()
            .count();
        if lines > MAX_TEST_FILE_LINES {
            over.push((rel.clone(), format!("{rel}: {lines} lines")));
        }
    }
    let what =
        format!("test files over {MAX_TEST_FILE_LINES} lines; split them by what they check");
    check_against_known(&over, &KNOWN_TEST_FILES, &what);
}
