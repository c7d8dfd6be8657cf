//! The crate's layers point one way. Every `crate::X` and `super::X` path
//! outside tests and comments is an edge from the top-level module that
//! writes it to module `X`; each edge must go to a lower layer, which also
//! makes a cycle between top-level modules impossible. The layers are the
//! ones the crate docs' `# Layout` names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Bottom to top. A module may use only modules of lower layers.
const LAYERS: &[&[&str]] = &[
    // The protocol, sans-IO: a leaf.
    &["http"],
    // The configuration's schema and value types.
    &["config"],
    // What the layers above report failures with.
    &["error"],
    // Logging, access log, counters and metrics.
    &["observe"],
    // The shard's own ring (a leaf: it uses no other module).
    &["uring"],
    // Outbound TCP connects for the clients above.
    &["net"],
    // The Redis client (below the rate limiter, whose fleet-wide policies use it).
    &["redis"],
    // Rate limiting; routing, handlers and the frozen route service.
    &["ratelimit", "route"],
    // Static files, as route handlers.
    &["files"],
    // TLS settings, then the byte streams over them and the ring.
    &["tls"],
    &["transport"],
    // Serving connections on one shard; WebSocket sessions taking them over.
    &["server", "ws"],
    // Calling other services from a shard.
    &["client", "postgres"],
    // The reverse proxy, over the client.
    &["proxy"],
    // The process: CPUs, listeners, threads, control, supervision, signals.
    &["runtime"],
    // The builder service authors use.
    &["app"],
    // Host checks, the reference app and the test client, then the command
    // line over them.
    &["doctor", "reference", "testing"],
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

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

/// The code of a file without comments, string contents and its test
/// module (by convention the last item, after `#[cfg(test)]`).
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    let mut code = String::new();
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or("");
        // Strings are blanked so that a message naming a path is no edge.
        let mut in_string = false;
        for c in line.chars() {
            if c == '"' {
                in_string = !in_string;
                code.push(c);
            } else if !in_string {
                code.push(c);
            }
        }
        code.push('\n');
    }
    code
}

fn ident_at(code: &str) -> String {
    code.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Top-level modules named right after a path prefix at `at` (`X` in
/// `prefix::X`, each `X` in `prefix::{X::.., Y}`).
fn named_after(code: &str) -> Vec<String> {
    if let Some(group) = code.strip_prefix('{') {
        let mut names = Vec::new();
        let mut depth = 0;
        let mut start = true;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => start = true,
                c if start && (c.is_alphanumeric() || c == '_') => {
                    names.push(ident_at(&group[i..]));
                    start = false;
                }
                c if c.is_whitespace() => {}
                _ => start = false,
            }
        }
        names
    } else {
        vec![ident_at(code)]
    }
}

/// Every edge between top-level modules: (from, to) → where.
fn edges() -> BTreeMap<(String, String), BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let parts: Vec<String> = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts.last().is_some_and(|p| p == "tests.rs") {
            continue;
        }
        let top = parts[0].trim_end_matches(".rs").to_owned();
        if top == "lib" || top == "main" {
            continue;
        }
        // How many `super::` reach the crate root from this file.
        let is_mod = parts.last().is_some_and(|p| p == "mod.rs");
        let depth = parts.len() - usize::from(is_mod);
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        let mut add = |to: String| {
            if to != top && layer_of(&to).is_some() {
                edges
                    .entry((top.clone(), to))
                    .or_default()
                    .insert(relative.display().to_string());
            }
        };
        for (at, _) in code.match_indices("crate::") {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            named_after(&code[at + "crate::".len()..])
                .into_iter()
                .for_each(&mut add);
        }
        for (at, _) in code.match_indices("super::") {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let mut rest = &code[at..];
            let mut ups = 0;
            while let Some(next) = rest.strip_prefix("super::") {
                ups += 1;
                rest = next;
            }
            if ups >= depth {
                named_after(rest).into_iter().for_each(&mut add);
            }
        }
    }
    edges
}

#[test]
fn every_module_is_in_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in std::fs::read_dir(&src).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let module = name.trim_end_matches(".rs");
        if module == "lib" || module == "main" {
            continue;
        }
        assert!(
            layer_of(module).is_some(),
            "src/{name} is in no layer: add it to LAYERS in tests/layers.rs and to the crate docs' # Layout"
        );
    }
}

#[test]
fn dependencies_point_down() {
    let mut wrong = Vec::new();
    for ((from, to), files) in edges() {
        let (Some(a), Some(b)) = (layer_of(&from), layer_of(&to)) else {
            continue;
        };
        if b >= a {
            wrong.push(format!(
                "{from} (layer {a}) uses {to} (layer {b}) in {}",
                files.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies that do not point down:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_checker_sees_edges() {
    // Guards the check itself: the server does use the protocol.
    let edges = edges();
    assert!(edges.contains_key(&("server".to_owned(), "http".to_owned())));
    assert!(named_after("{a::b, c, d::{e, f}}") == ["a", "c", "d"]);
}

/// `unsafe` blocks, functions and impls in `text`, outside comments.
fn unsafe_count(text: &str) -> usize {
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .map(|line| {
            ["unsafe {", "unsafe fn", "unsafe impl"]
                .iter()
                .map(|form| line.matches(form).count())
                .sum::<usize>()
        })
        .sum()
}

#[test]
fn the_unsafe_inventory_is_complete() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let docs = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let mut listed = BTreeMap::new();
    for row in docs.lines().filter_map(|l| l.strip_prefix("//! | `")) {
        let Some((file, rest)) = row.split_once("` | ") else {
            continue;
        };
        let count: usize = rest.split(" |").next().unwrap().trim().parse().unwrap();
        listed.insert(file.to_owned(), count);
    }
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found = BTreeMap::new();
    for file in files {
        let count = unsafe_count(&std::fs::read_to_string(&file).unwrap());
        let name = file.strip_prefix(&src).unwrap().display().to_string();
        if count > 0 && name != "lib.rs" {
            found.insert(name, count);
        }
    }
    assert_eq!(
        listed, found,
        "the unsafe inventory in src/lib.rs (left) differs from the code (right)"
    );
}
