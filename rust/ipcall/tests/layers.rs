//! The core's shape (docs/ARCHITECTURE.md), checked on its source: one
//! dependency direction `api/` → `transport/` → `core/` and `sys/`, no raw
//! system call outside `sys/`, and no file past the size at which it
//! should be split.

use std::fs;
use std::path::{Path, PathBuf};

/// The public API types only `api/` may name.
const API_TYPES: [&str; 4] = ["Server", "Client", "Request", "Pending"];
/// Longest source file, in lines.
const MAX_LINES: usize = 700;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's code without comments, and without its `#[cfg(test)]` tail
/// module (tests may drive the public API from anywhere).
fn code_of(text: &str) -> String {
    let tests = text
        .find("#[cfg(test)]\nmod tests {")
        .or_else(|| text.find("#[cfg(all(test, not(feature = \"nats\")))]\nmod tests {"));
    let body = match tests {
        Some(at) => &text[..at],
        None => text,
    };
    body.lines().map(|line| without_strings(line.split("//").next().unwrap_or(""))).collect::<Vec<_>>().join("\n")
}

/// `line` with the contents of its string literals blanked (a header name
/// such as `"Ipcall-Client"` names no type).
fn without_strings(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in line.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
                out.push(c);
            }
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        out.push(c);
    }
    out
}

/// True if `code` names the type `word`: as a whole word, not as a variant
/// of some enum (`Poll::Pending`, `FrameKind::Request`, or the variant's own
/// declaration line `Request = 1,`).
fn names_word(code: &str, word: &str) -> bool {
    code.lines().any(|line| {
        let declared_variant = line.trim().strip_prefix(word).is_some_and(|rest| {
            let rest = rest.trim();
            rest == "," || (rest.starts_with('=') && rest.ends_with(','))
        });
        !declared_variant
            && line.match_indices(word).any(|(at, _)| {
                let before = line[..at].chars().next_back();
                let after = line[at + word.len()..].chars().next();
                let part_of_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
                let a_variant = line[..at].ends_with("::") && !line[..at].ends_with("api::");
                !part_of_word(before) && !part_of_word(after) && !a_variant
            })
    })
}

fn layer_files() -> Vec<(String, String)> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(src()).unwrap().to_string_lossy().into_owned();
            (relative, fs::read_to_string(&path).unwrap())
        })
        .collect()
}

/// Test files of a module (`*tests.rs`) exercise it through the public API.
fn is_test_file(relative: &str) -> bool {
    relative.ends_with("tests.rs") || relative.ends_with("ring_loom.rs")
}

#[test]
fn only_api_names_the_public_api_types() {
    let mut offences = Vec::new();
    for (relative, text) in layer_files() {
        let lower = ["transport/", "core/", "sys/"].iter().any(|layer| relative.starts_with(layer));
        if !lower || is_test_file(&relative) {
            continue;
        }
        let code = code_of(&text);
        for word in API_TYPES {
            if names_word(&code, word) {
                offences.push(format!("{relative} names `{word}`"));
            }
        }
    }
    assert!(offences.is_empty(), "below api/, only neutral types may appear:\n{}", offences.join("\n"));
}

#[test]
fn only_api_and_the_crate_root_use_the_api_layer() {
    let offences: Vec<String> = layer_files()
        .into_iter()
        .filter(|(relative, text)| {
            !relative.starts_with("api/") && relative != "lib.rs" && code_of(text).contains("crate::api")
        })
        .map(|(relative, _)| relative)
        .collect();
    assert!(offences.is_empty(), "these files reach up into api/: {offences:?}");
}

#[test]
fn the_lowest_layers_know_no_transport() {
    let offences: Vec<String> = layer_files()
        .into_iter()
        .filter(|(relative, text)| {
            (relative.starts_with("core/") || relative.starts_with("sys/"))
                && code_of(text).contains("crate::transport")
        })
        .map(|(relative, _)| relative)
        .collect();
    assert!(offences.is_empty(), "core/ and sys/ must not depend on transport/: {offences:?}");
}

/// The raw `libc` calls in `code`, comments left out: each `libc::name(`,
/// as the regex `libc::[a-z_0-9]+\(` would find them. Constants and types
/// (`libc::POLLIN`, `libc::pollfd { .. }`, `libc::c_int`) are not calls.
fn libc_calls(code: &str) -> Vec<String> {
    let mut calls = Vec::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or("");
        for (at, _) in line.match_indices("libc::") {
            let rest = &line[at + "libc::".len()..];
            let name_len = rest.find(|c: char| !matches!(c, 'a'..='z' | '0'..='9' | '_')).unwrap_or(rest.len());
            if name_len > 0 && rest[name_len..].starts_with('(') {
                calls.push(format!("libc::{}(", &rest[..name_len]));
            }
        }
    }
    calls
}

#[test]
fn transports_make_no_raw_system_call() {
    let mut offences = Vec::new();
    for (relative, text) in layer_files() {
        if !relative.starts_with("transport/") || is_test_file(&relative) {
            continue;
        }
        // A module's tail `mod tests` may drive raw descriptors, as its
        // `*tests.rs` files may.
        for call in libc_calls(&code_of(&text)) {
            offences.push(format!("{relative}: {call}"));
        }
    }
    assert!(offences.is_empty(), "transport/ must call the kernel through sys/ only:\n{}", offences.join("\n"));
}

#[test]
fn no_source_file_is_past_the_split_size() {
    let long: Vec<String> = layer_files()
        .into_iter()
        .filter(|(_, text)| text.lines().count() > MAX_LINES)
        .map(|(relative, text)| format!("{relative}: {} lines", text.lines().count()))
        .collect();
    assert!(long.is_empty(), "split these (at most {MAX_LINES} lines each): {long:?}");
}

#[test]
fn the_checks_see_what_they_check() {
    // A check that reads nothing passes vacuously: make sure it reads the tree.
    let files = layer_files();
    assert!(files.iter().any(|(r, _)| r == "transport/mod.rs"));
    assert!(files.iter().any(|(r, _)| r == "api/server.rs"));
    assert!(names_word("let s: Server = x;", "Server"));
    assert!(!names_word("StreamServer ServerOptions", "Server"));
    assert!(!names_word(&code_of("// a Server\nfn f() {}"), "Server"));
    assert!(!names_word("Poll::Pending\n    Request = 1,\n    Server,", "Pending"));
    assert!(!names_word("    Request = 1,\n    Server,", "Request"));
    assert!(names_word("use crate::api::Request;", "Request"));
    assert!(!names_word(&code_of("const H: &str = \"Ipcall-Client\";"), "Client"));
    assert!(names_word(&code_of("let c = \"x\"; let s: Client = c;"), "Client"));
    assert!(files.iter().any(|(r, _)| r == "transport/unix.rs"));
    assert_eq!(libc_calls("let n = unsafe { libc::read(fd, p, len) };"), ["libc::read("]);
    assert_eq!(libc_calls("x(libc::shutdown(fd, libc::SHUT_RDWR), libc::accept4 (a))"), ["libc::shutdown("]);
    assert!(libc_calls("libc::pollfd { fd, events: libc::POLLIN, revents: 0 }; libc::c_int").is_empty());
    assert!(libc_calls("// SAFETY: unlike libc::write(fd, ..)").is_empty());
    // On the real tree, it sees the calls that sys/ keeps on libc.
    assert!(files.iter().any(|(r, t)| r == "sys/sigpipe.rs" && libc_calls(t).contains(&"libc::sigtimedwait(".into())));
}
