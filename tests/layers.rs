//! The library's modules import only downward: each top-level module of `src/` may use only the
//! modules listed before it in `LAYERS` (docs/architecture.md draws the same order). A new
//! import that climbs up fails here with the file that makes it; a new top-level module must be
//! given its place.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Bottom to top. The command line (`src/cli/`, `src/main.rs`) is the binary's, above all of them.
const LAYERS: &[&str] = &[
    "error", "torch_failure", "ffi", "fsutil", "values", "progress", "distributed", "device", "tokenizer", "metrics",
    "encoder", "task", "data", "pretrained", "viz", "explain", "predict", "serve", "train", "recipes",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a source file names through `crate::` (comments left out), grouped
/// imports (`use crate::{a::X, b::{Y, Z}}`) included.
fn crate_uses(source: &str) -> BTreeSet<String> {
    let code: String = source.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let mut uses = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && (c.is_alphanumeric() || c == '_') => {
                        let word: String =
                            group[i..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                        uses.insert(word);
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            uses.insert(rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect());
        }
    }
    uses.remove("self");
    uses
}

#[test]
fn modules_import_only_downward() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut climbs = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        if matches!(top.as_str(), "cli" | "main" | "lib") {
            continue;
        }
        let level = LAYERS.iter().position(|l| *l == top);
        let level = level.unwrap_or_else(|| panic!("src/{top} has no place in LAYERS (tests/layers.rs)"));
        for used in crate_uses(&std::fs::read_to_string(file).unwrap()) {
            let Some(other) = LAYERS.iter().position(|l| *l == used) else {
                panic!("{}: crate::{used} is not a module of LAYERS", rel.display())
            };
            if other >= level && used != top {
                climbs.push(format!("src/{} uses crate::{used}, which is not below {top}", rel.display()));
            }
        }
    }
    assert!(climbs.is_empty(), "imports that climb:\n{}", climbs.join("\n"));
}

#[test]
fn grouped_and_plain_imports_are_both_seen() {
    let uses = crate_uses("use crate::{a::X, b::{Y, Z}};\nuse crate::c::W; // crate::d\nlet x = crate::e::f();");
    assert_eq!(uses.into_iter().collect::<Vec<_>>(), ["a", "b", "c", "e"]);
}
