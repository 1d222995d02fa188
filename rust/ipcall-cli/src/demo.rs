//! `ipcall demo`: a mixed-language pipeline. This process (Rust) spawns a
//! Python, a Node and a C stage, hands each a one-shot name in
//! `IPCALL_SERVER`, sends work items through the stages in turn, checks what
//! comes back, and prints a table per stage.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipcall::{Client, Error, Kind, Name};

use crate::args::Args;
use crate::failure::Failure;
use crate::stats::{format_bytes, format_duration, print_table, quantile};

pub const HELP: &str = "\
Usage: ipcall demo [--items N] [--root DIR] [--python PY] [--node NODE] [--c-stage PROGRAM]
                   [--nats-server PROGRAM]

Runs a pipeline across languages: this Rust process starts three stage
servers in other processes — Python (reverses the words of an item), Node
(upper-cases it) and C (appends an FNV-1a checksum) — gives each a fresh
one-shot name in IPCALL_SERVER, and sends N work items through them, one
stage after the other, over the transports this build has (taken in turn:
unix, pipe, shm). Every result is checked against the same pipeline
computed here. Ends with a table per stage: calls, bytes, p50/p99 latency,
transport. A stage whose language is not built is reported as missing.
`make demo` builds everything first.

  --items N          work items (default 1000)
  --root DIR         the ipcall checkout (default: found from the current
                     directory upwards)
  --python PY        Python with the ipcall wheel (default ROOT/.venv/bin/python)
  --node NODE        node (default `node`, with the package in ROOT/node)
  --c-stage PROGRAM  the compiled C stage (default ROOT/target/demo/stage_c)
  --nats-server PROGRAM
                     start this nats-server on a loopback port and run the
                     last stage over nats: (as across hosts) instead
";

/// How long a stage may take to bind its name before the demo gives up.
const STAGE_START_TIMEOUT: Duration = Duration::from_secs(30);

/// One stage of the pipeline.
struct Stage {
    /// What it does to an item.
    title: &'static str,
    /// Its language.
    language: &'static str,
    /// The same transformation in Rust, to check its answers.
    expected: fn(&[u8]) -> Vec<u8>,
    /// The command that runs it, or why it cannot run here.
    command: Result<Vec<PathBuf>, String>,
}

/// A stage that is running.
struct Running {
    stage: Stage,
    kind: Kind,
    child: Child,
    client: Client,
    latencies: Vec<Duration>,
    bytes_sent: u64,
    bytes_back: u64,
}

/// Runs `ipcall demo`.
pub fn run(args: &Args) -> Result<(), Failure> {
    let items: usize = args.number("--items")?.unwrap_or(1000);
    let root = match args.value("--root") {
        Some(root) => PathBuf::from(root),
        None => find_root()?,
    };
    let kinds: Vec<Kind> =
        [Kind::Unix, Kind::Pipe, Kind::Shm].into_iter().filter(|&k| crate::bench::availability(k).is_ok()).collect();
    if kinds.is_empty() {
        return Err(Failure::other("this build has no cross-process transport (unix, pipe, shm)"));
    }

    let (present, missing): (Vec<Stage>, Vec<Stage>) =
        stages(&root, args).into_iter().partition(|stage| stage.command.is_ok());
    for stage in &missing {
        let reason = stage.command.as_ref().err().map_or("", String::as_str);
        eprintln!("ipcall demo: the {} stage is missing: {reason}", stage.language);
    }
    if present.is_empty() {
        return Err(Failure::other("no stage can run here (see the lines above)"));
    }
    // Started before any thread: `bind_unique(nats)` names come from it.
    let nats = args.value("--nats-server").map(|p| crate::nats_server::NatsServer::start(Path::new(p))).transpose()?;
    if let Some(nats) = &nats {
        std::env::set_var("IPCALL_NATS_URL", &nats.url);
    }
    let mut running = Vec::new();
    let count = present.len();
    for (index, stage) in present.into_iter().enumerate() {
        let kind = if nats.is_some() && index + 1 == count { Kind::Nats } else { kinds[index % kinds.len()] };
        running.push(start(stage, kind)?);
    }

    let started = Instant::now();
    // The journey of one short item, shown at the end.
    let mut journey: Option<String> = None;
    for index in 0..items {
        let item = work_item(index);
        // A short item whose words visibly change order.
        let words: Vec<&[u8]> = item.split(|&b| b == b' ').collect();
        let show = journey.is_none() && item.len() <= 40 && words.len() >= 3 && words.first() != words.last();
        let mut steps = vec![format!("item {index} {:?}", String::from_utf8_lossy(&item))];
        let mut expected = item.clone();
        let mut current = item;
        for stage in &mut running {
            expected = (stage.stage.expected)(&expected);
            let call_started = Instant::now();
            let answer = stage.client.call(&current)?;
            stage.latencies.push(call_started.elapsed());
            stage.bytes_sent += current.len() as u64;
            stage.bytes_back += answer.len() as u64;
            if show {
                steps.push(format!("{} {:?}", stage.stage.language, String::from_utf8_lossy(&answer)));
            }
            current = answer;
        }
        if show {
            journey = Some(steps.join(" → "));
        }
        if current != expected {
            return Err(Failure::other(format!(
                "item {index} came back as {:?}, expected {:?}",
                String::from_utf8_lossy(&current[..current.len().min(60)]),
                String::from_utf8_lossy(&expected[..expected.len().min(60)]),
            )));
        }
    }
    let elapsed = started.elapsed();

    let mut rows = Vec::new();
    for mut stage in running {
        drop(stage.client);
        let status = stage.child.wait().map_err(|e| Failure::other(format!("waiting for a stage: {e}")))?;
        if !status.success() {
            return Err(Failure::other(format!("the {} stage ended with {status}", stage.stage.language)));
        }
        rows.push(vec![
            stage.stage.title.to_string(),
            stage.stage.language.to_string(),
            stage.kind.to_string(),
            stage.latencies.len().to_string(),
            format_bytes(stage.bytes_sent),
            format_bytes(stage.bytes_back),
            format_duration(quantile(&mut stage.latencies, 0.50)),
            format_duration(quantile(&mut stage.latencies, 0.99)),
        ]);
    }
    println!(
        "{items} work items went through {} stages and back in {:.2} s; every result matched.",
        rows.len(),
        elapsed.as_secs_f64()
    );
    if let Some(journey) = journey {
        println!("{journey}");
    }
    println!();
    print_table(&["stage", "language", "transport", "calls", "bytes in", "bytes out", "p50", "p99"], &rows);
    for stage in missing {
        println!("missing: the {} stage ({})", stage.language, stage.command.err().unwrap_or_default());
    }
    Ok(())
}

/// The three stages, with their commands or why they cannot run.
fn stages(root: &Path, args: &Args) -> Vec<Stage> {
    let demo_dir = root.join("examples/demo");
    let python = args.value("--python").map_or_else(|| root.join(".venv/bin/python"), PathBuf::from);
    let python_command = if python.exists() || args.value("--python").is_some() {
        Ok(vec![python, demo_dir.join("stage.py")])
    } else {
        Err(format!("{} not found (make demo creates it)", python.display()))
    };
    let node_command = if !root.join("node/package.json").exists() {
        Err("node package not in this checkout".to_string())
    } else if !has_node_addon(&root.join("node")) {
        Err("node package not built (make demo builds it)".to_string())
    } else {
        let node = args.value("--node").unwrap_or("node");
        Ok(vec![PathBuf::from(node), demo_dir.join("stage.js")])
    };
    let c_stage = args.value("--c-stage").map_or_else(|| root.join("target/demo/stage_c"), PathBuf::from);
    let c_command = if c_stage.exists() {
        Ok(vec![c_stage])
    } else {
        Err(format!("{} not built (make demo builds it)", c_stage.display()))
    };
    vec![
        Stage { title: "reverse words", language: "Python", expected: reverse_words, command: python_command },
        Stage { title: "upper-case", language: "Node", expected: upper_case, command: node_command },
        Stage { title: "checksum", language: "C", expected: append_checksum, command: c_command },
    ]
}

fn has_node_addon(node_dir: &Path) -> bool {
    std::fs::read_dir(node_dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_str().is_some_and(|n| n.starts_with("ipcall.") && n.ends_with(".node")))
    })
}

/// Starts `stage` on a fresh one-shot name of `kind` and connects to it.
fn start(stage: Stage, kind: Kind) -> Result<Running, Failure> {
    let name = Name::unique(kind)?;
    let command = stage.command.as_ref().expect("only present stages are started");
    let mut child = Command::new(&command[0])
        .args(&command[1..])
        .env("IPCALL_SERVER", name.as_str())
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| {
            Failure::other(format!("starting the {} stage ({}): {e}", stage.language, command[0].display()))
        })?;
    let started = Instant::now();
    let client = loop {
        match Client::connect_timeout(name.as_str(), Duration::from_millis(100)) {
            Ok(client) => break client,
            // Not bound yet, or bound but not answering the handshake yet.
            Err(Error::NotFound { .. } | Error::Timeout { .. }) if started.elapsed() < STAGE_START_TIMEOUT => {
                if let Some(status) = child.try_wait().map_err(|e| Failure::other(e.to_string()))? {
                    return Err(Failure::other(format!(
                        "the {} stage ended ({status}) before binding its name",
                        stage.language
                    )));
                }
            }
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(error.into());
            }
        }
    };
    Ok(Running { stage, kind, child, client, latencies: Vec::new(), bytes_sent: 0, bytes_back: 0 })
}

/// The checkout: the nearest directory upwards that has examples/demo.
fn find_root() -> Result<PathBuf, Failure> {
    let here = std::env::current_dir().map_err(|e| Failure::other(format!("current directory: {e}")))?;
    here.ancestors()
        .find(|dir| dir.join("examples/demo").is_dir())
        .map(Path::to_path_buf)
        .ok_or_else(|| Failure::other("run it inside the ipcall checkout, or give --root DIR"))
}

/// Work item `index`: 1 to 2048 lower-case words, the same on every run.
fn work_item(index: usize) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett", "kilo", "lima",
        "mike", "november", "oscar", "papa",
    ];
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (index as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let count = 1 + (next() % (1 << (next() % 12))) as usize;
    let words: Vec<&str> = (0..count).map(|_| WORDS[(next() % 16) as usize]).collect();
    words.join(" ").into_bytes()
}

/// The Python stage's work: the words of the item in reverse order.
fn reverse_words(item: &[u8]) -> Vec<u8> {
    let words: Vec<&[u8]> = item.split(|&b| b == b' ').rev().collect();
    words.join(&b' ')
}

/// The Node stage's work: ASCII letters upper-cased.
fn upper_case(item: &[u8]) -> Vec<u8> {
    item.to_ascii_uppercase()
}

/// The C stage's work: ` #` and the FNV-1a 32-bit hash in 8 hex digits.
fn append_checksum(item: &[u8]) -> Vec<u8> {
    let hash = item.iter().fold(0x811C_9DC5u32, |hash, &b| (hash ^ u32::from(b)).wrapping_mul(0x0100_0193));
    let mut out = item.to_vec();
    out.extend_from_slice(format!(" #{hash:08x}").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_transformations() {
        assert_eq!(reverse_words(b"alpha bravo charlie"), b"charlie bravo alpha");
        assert_eq!(reverse_words(b""), b"");
        assert_eq!(upper_case(b"kilo lima"), b"KILO LIMA");
        // FNV-1a test vectors: "" -> 811c9dc5, "a" -> e40c292c.
        assert_eq!(append_checksum(b""), b" #811c9dc5");
        assert_eq!(append_checksum(b"a"), b"a #e40c292c");
    }

    #[test]
    fn work_items_are_words() {
        for index in 0..200 {
            let item = work_item(index);
            assert!(!item.is_empty() && item.len() <= 2048 * 9, "item {index}: {} bytes", item.len());
            assert!(item.iter().all(|&b| b == b' ' || b.is_ascii_lowercase()));
            assert_eq!(item, work_item(index), "items are the same on every run");
        }
    }
}
