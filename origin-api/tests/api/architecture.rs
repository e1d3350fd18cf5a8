//! The layering of `origin-api/src`, checked: the import graph between modules has no
//! cycle, the domain knows no HTTP, and only `http/` speaks axum.
//!
//! A module is a file (`src/a/b.rs` is `a::b`, `src/a/mod.rs` is `a`); an edge is any
//! `crate::…` or `super::…` path in it (use statements and inline paths alike), pointing at
//! the longest module prefix of the path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts
}

/// `crate::a::b::C` and `super::x` paths in `text` (a file of `module`), as module segment
/// lists.
fn paths(text: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    // A file's own unit tests (`#[cfg(test)] mod tests`, at its end) are not part of the
    // layering, and their `super` is the file itself.
    for line in text
        .lines()
        .take_while(|l| !l.trim_start().starts_with("#[cfg(test)]"))
    {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find(['c', 's']) {
            let tail = &rest[at..];
            let preceded =
                at > 0 && rest[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
            if !preceded && (tail.starts_with("crate::") || tail.starts_with("super::")) {
                let end = tail.find(|c: char| !ident(c)).unwrap_or(tail.len());
                let segments: Vec<&str> =
                    tail[..end].split("::").filter(|s| !s.is_empty()).collect();
                let resolved = if segments[0] == "crate" {
                    segments[1..].iter().map(|s| s.to_string()).collect()
                } else {
                    // Each `super` is one module up, from `a/b.rs` and `a/b/mod.rs` alike.
                    let mut base: Vec<String> = module.to_vec();
                    let mut i = 0;
                    while segments.get(i) == Some(&"super") {
                        base.pop();
                        i += 1;
                    }
                    base.extend(segments[i..].iter().map(|s| s.to_string()));
                    base
                };
                out.push(resolved);
                rest = &tail[end..];
            } else {
                rest = &tail[1..];
            }
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        let name = module.join("::");
        let text = std::fs::read_to_string(file).expect("read");
        for path in paths(&text, &module) {
            let target = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| modules.contains(p));
            if let Some(target) = target {
                let target = target.join("::");
                if target != name && !target.is_empty() && !name.is_empty() {
                    edges.entry(name.clone()).or_default().insert(target);
                }
            }
        }
        edges.entry(name).or_default();
    }
    edges
}

/// A cycle in the graph, if any (depth-first search).
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let start = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(next, edges, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if !state.contains_key(node.as_str())
            && let Some(c) = visit(node, edges, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_module_graph_has_no_cycle() {
    let edges = graph();
    assert!(
        edges.len() > 30,
        "the source walk found only {} modules",
        edges.len()
    );
    if let Some(cycle) = find_cycle(&edges) {
        panic!("import cycle: {}", cycle.join(" → "));
    }
}

#[test]
fn the_domain_knows_no_http() {
    let edges = graph();
    for (module, targets) in &edges {
        if module.ends_with("::tests") {
            continue;
        }
        let layer = module.split("::").next().unwrap_or("");
        if matches!(
            layer,
            "domain" | "store" | "cache" | "passwords" | "ratelimit" | "background"
        ) {
            for target in targets {
                assert!(
                    !target.starts_with("http")
                        && !target.starts_with("app")
                        && !target.starts_with("gateway"),
                    "{module} depends on {target}"
                );
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    for file in files {
        let rel = file
            .strip_prefix(&src)
            .expect("src")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&file).expect("read");
        if !rel.starts_with("http/") && rel != "lib.rs" {
            assert!(!text.contains("axum::"), "{rel} speaks axum outside http/");
        }
    }
}

#[test]
fn a_planted_cycle_is_found() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges.entry("a".into()).or_default().insert("b".into());
    edges.entry("b".into()).or_default().insert("c".into());
    edges.entry("c".into()).or_default().insert("a".into());
    assert_eq!(find_cycle(&edges).expect("cycle"), ["a", "b", "c", "a"]);
    edges.get_mut("c").expect("c").clear();
    assert!(find_cycle(&edges).is_none());
}
