//! Documentation that must match the code: the system-call table.

use std::collections::BTreeSet;
use std::path::Path;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the repository root")
}

/// Syscall numbers the kernel's dispatch table handles (the arms of `fn call`), minus those
/// that only return ENOSYS there.
fn dispatched() -> BTreeSet<u64> {
    let src = std::fs::read_to_string(repo().join("guest-kernel/kernel/src/syscall/mod.rs"))
        .expect("dispatch table");
    let body = &src[src.find("fn call(").expect("fn call")..src.find("fn unknown(").expect("fn unknown")];
    let mut out = BTreeSet::new();
    let lines: Vec<&str> = body.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let Some((pattern, rest)) = t.split_once("=>") else { continue };
        if !pattern.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            continue;
        }
        // An arm whose body is only `Err(Errno::ENOSYS)` does not implement the call.
        let next = lines.get(i + 1).map_or("", |l| l.trim());
        if rest.trim().starts_with("Err(Errno::ENOSYS)")
            || (rest.trim() == "{" && next.starts_with("Err(Errno::ENOSYS)"))
        {
            continue;
        }
        for n in pattern.split('|') {
            out.insert(n.trim().parse().expect("numeric syscall arm"));
        }
    }
    out
}

/// (number, status) rows of docs/syscalls.md.
fn documented() -> Vec<(u64, String)> {
    let doc = std::fs::read_to_string(repo().join("docs/syscalls.md")).expect("docs/syscalls.md");
    doc.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let nr = cells.get(1)?.parse().ok()?;
            Some((nr, cells.get(3)?.to_string()))
        })
        .collect()
}

#[test]
fn syscall_table_matches_the_dispatch_table() {
    let code = dispatched();
    assert!(code.len() > 100, "parsed only {} dispatch arms", code.len());
    let doc = documented();
    assert!(doc.len() > 300, "docs/syscalls.md lists only {} calls", doc.len());
    let mut problems = Vec::new();
    for (nr, status) in &doc {
        let implemented = status == "yes" || status == "partial";
        if implemented != code.contains(nr) {
            problems.push(format!(
                "syscall {nr}: docs say {status:?}, dispatch table {}",
                if code.contains(nr) { "handles it" } else { "does not" }
            ));
        }
    }
    for nr in &code {
        if !doc.iter().any(|(n, _)| n == nr) {
            problems.push(format!("syscall {nr} is dispatched but missing from docs/syscalls.md"));
        }
    }
    assert!(problems.is_empty(), "docs/syscalls.md is out of date:\n{}", problems.join("\n"));
}
