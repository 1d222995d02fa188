//! `bench-report`: the last step of `make bench`. Reads the results every
//! bench of the run wrote (`$IPCALL_BENCH_RESULTS/*.tsv`, see
//! `ipcall_benches::report`), writes them as Markdown tables between the
//! README's `<!-- ipcall-bench-peers` and `<!-- /ipcall-bench-peers -->`
//! markers, and draws the 64 B p50 ratios to the floor per mechanism and
//! placement as an SVG chart (linked from that block).
//!
//! Usage: `bench-report <results dir> <README.md> <chart.svg> <chart link>`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use ipcall_benches::report::{read_dir, Record};
use ipcall_benches::table::Table;

const BEGIN: &str = "<!-- ipcall-bench-peers";
const END: &str = "<!-- /ipcall-bench-peers -->";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [results, readme, svg, link] = args.as_slice() else {
        eprintln!("usage: bench-report <results dir> <README.md> <chart.svg> <chart link>");
        return ExitCode::from(2);
    };
    match run(Path::new(results), Path::new(readme), Path::new(svg), link) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench-report: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(results: &Path, readme: &Path, svg: &Path, link: &str) -> Result<(), String> {
    let records = read_dir(results).map_err(|e| format!("{}: {e}", results.display()))?;
    if records.is_empty() {
        return Err(format!("no results in {}", results.display()));
    }
    // `make bench` leaves the load average of its start there.
    let start_load = std::fs::read_to_string(results.join("loadavg-start")).unwrap_or_default();
    let block = markdown(&records, link, &start_load);
    print!("{block}");
    let text = std::fs::read_to_string(readme).map_err(|e| format!("{}: {e}", readme.display()))?;
    let updated = replace_block(&text, &block)
        .ok_or_else(|| format!("{} has no {BEGIN} ... {END} block to replace", readme.display()))?;
    std::fs::write(readme, updated).map_err(|e| format!("{}: {e}", readme.display()))?;
    std::fs::write(svg, chart(&records)).map_err(|e| format!("{}: {e}", svg.display()))?;
    eprintln!("bench-report: wrote the table into {} and the chart to {}", readme.display(), svg.display());
    Ok(())
}

/// `text` with the lines from the BEGIN marker to the END marker (both
/// kept) replaced by `block`; None without both markers in that order.
fn replace_block(text: &str, block: &str) -> Option<String> {
    let start = text.find(BEGIN)?;
    let begin_line_end = start + text[start..].find('\n')? + 1;
    let end = begin_line_end + text[begin_line_end..].find(END)?;
    Some(format!("{}{}{}", &text[..begin_line_end], block, &text[end..]))
}

/// What a table is, in the README.
fn title(table: &str) -> &str {
    match table {
        "peers" => "ipcall, its peers and the raw floors, pinned (`benches/benches/peers/`; ratio = row / its floor in the same placement: above 1 is slower for p50, below 1 is slower for GB/s)",
        "stream" => "The byte-stream transports against their raw floors, in separate processes (`benches/benches/stream.rs`; ratio = row / its floor in the same placement; a throughput's floor is the better of its default and enlarged buffers)",
        "scaling" => "N-client scaling, calls/s (`benches/benches/scaling.rs`; ratio = N clients / 1 client)",
        "node" => "Node, 64 B round trip p50 (`node/bench/roundtrip.js`, pinned: node and the servers' sides on one CPU, or on two; 3 interleaved rounds: a row is the median of its rounds, a ratio the median of the rounds' ratios to the row's reference)",
        "python" => "Python, 64 B round trip p50 (`python/bench/roundtrip.py`, pinned: the Python process and the servers on one CPU, or on two; ratio = row / its reference)",
        other => other,
    }
}

fn format_value(metric: &str, value: f64) -> String {
    if !value.is_finite() {
        "—".into()
    } else if metric.contains("GB/s") {
        format!("{value:.2}")
    } else if metric.contains("calls/s") {
        if value >= 1e6 {
            format!("{:.2} M", value / 1e6)
        } else {
            format!("{:.0} k", value / 1e3)
        }
    } else if metric.contains("µs") {
        format!("{value:.1}")
    } else {
        ipcall_benches::table::ns(value)
    }
}

/// The tables (one per `table` of the records, in first-seen order): a
/// row per mechanism, a column per (placement, metric) — p99s left out —
/// each cell "value (ratio×)".
fn markdown(records: &[Record], link: &str, start_load: &str) -> String {
    let mut out = String::new();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let _ = writeln!(out, "Written by `make bench` (`benches/src/bin/bench_report.rs`; edits here are overwritten).");
    let start: Vec<&str> = start_load.split_whitespace().take(3).collect();
    let start = if start.len() == 3 { format!("{} at the start, ", start.join(" ")) } else { String::new() };
    let _ = writeln!(
        out,
        "Last run: {}, {cpus} CPUs ({model}); load average {start}{} at the end (other builds ran on the machine when it is above the CPU count).",
        utc_date(),
        load.join(" ")
    );
    let _ = writeln!(out, "\n![64 B p50, ratio to the floor per mechanism and placement]({link})\n");
    let mut tables: Vec<&str> = Vec::new();
    for r in records {
        if !tables.contains(&r.table.as_str()) && r.table != "peers-skipped" {
            tables.push(&r.table);
        }
    }
    // The pinned comparison first, then scaling, then the faces; others after.
    let rank =
        |t: &str| ["peers", "stream", "scaling", "node", "python"].iter().position(|&k| k == t).unwrap_or(usize::MAX);
    tables.sort_by_key(|t| rank(t));
    for table in tables {
        let rows: Vec<&Record> = records.iter().filter(|r| r.table == table && !r.metric.contains("p99")).collect();
        let mut columns: Vec<(String, String)> = Vec::new();
        let mut mechanisms: Vec<String> = Vec::new();
        let mut floors: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in &rows {
            let column = (r.placement.clone(), r.metric.clone());
            if !columns.contains(&column) {
                columns.push(column);
            }
            if !mechanisms.contains(&r.mechanism) {
                mechanisms.push(r.mechanism.clone());
            }
            let list = floors.entry(r.mechanism.clone()).or_default();
            if !r.floor.is_empty() && !list.contains(&r.floor) {
                list.push(r.floor.clone());
            }
        }
        // Floors first, then the rest, each in first-seen order; columns by
        // metric, then placement (all p50s side by side).
        mechanisms.sort_by_key(|m| !m.starts_with("floor:"));
        let metric_rank = |metric: &str| columns.iter().position(|(_, m)| m == metric).unwrap_or(usize::MAX);
        let mut ordered = columns.clone();
        ordered.sort_by_key(|(_, metric)| metric_rank(metric));
        let columns = ordered;
        let mut headers = vec!["mechanism".to_string(), "against".to_string()];
        headers.extend(columns.iter().map(|(p, m)| if p.is_empty() { m.clone() } else { format!("{p} {m}") }));
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let mut md = Table::new(&headers).left_columns(2);
        for mechanism in &mechanisms {
            let mut cells = vec![mechanism.clone(), floors.get(mechanism).map(|f| f.join(" / ")).unwrap_or_default()];
            for (placement, metric) in &columns {
                let cell =
                    rows.iter().find(|r| &r.mechanism == mechanism && &r.placement == placement && &r.metric == metric);
                cells.push(match cell {
                    None => String::new(),
                    Some(r) if r.ratio.is_finite() => format!("{} ({:.2}×)", format_value(metric, r.value), r.ratio),
                    Some(r) => format_value(metric, r.value),
                });
            }
            md.row(cells);
        }
        let _ = writeln!(out, "{}:\n", title(table));
        out.push_str(&md.render());
        out.push('\n');
    }
    for r in records.iter().filter(|r| r.table == "peers-skipped") {
        let _ = writeln!(out, "- skipped {}: {}", r.mechanism, r.metric);
    }
    out
}

/// Today's date (UTC) as YYYY-MM-DD, from the system clock.
fn utc_date() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    // Civil-from-days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// A horizontal bar chart, log scale: per mechanism of the "peers" table
/// (and `pipe:`, which only the "stream" table has), one bar per
/// placement, length = 64 B p50 / its floor.
fn chart(records: &[Record]) -> String {
    let charted = |r: &Record| r.table == "peers" || (r.table == "stream" && r.mechanism == "ipcall pipe:");
    let bars: Vec<&Record> = records
        .iter()
        .filter(|r| charted(r) && r.metric == "64 B p50 ns" && r.ratio.is_finite() && r.ratio > 0.0)
        .collect();
    let mut mechanisms: Vec<&str> = Vec::new();
    let mut placements: Vec<&str> = Vec::new();
    for r in &bars {
        if !mechanisms.contains(&r.mechanism.as_str()) {
            mechanisms.push(&r.mechanism);
        }
        if !placements.contains(&r.placement.as_str()) {
            placements.push(&r.placement);
        }
    }
    let colors = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759"];
    let (left, width, bar, gap, top) = (230.0, 560.0, 13.0, 10.0, 60.0);
    let group = bar * placements.len().max(1) as f64 + gap;
    let height = top + group * mechanisms.len() as f64 + 62.0;
    let max_ratio = bars.iter().map(|r| r.ratio).fold(2.0f64, f64::max);
    let (lo, hi) = (0.5f64.log10(), (max_ratio * 1.5).log10());
    let x = |ratio: f64| left + (ratio.max(0.5).log10() - lo) / (hi - lo) * width;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" viewBox="0 0 {w} {height}" font-family="sans-serif" font-size="12">"#,
        w = left + width + 60.0
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="10" y="20" font-size="14" font-weight="bold">64 B round trip p50 / the floor of its class, per placement (log scale, lower is better)</text>"#
    );
    for (i, placement) in placements.iter().enumerate() {
        let lx = left + i as f64 * 120.0;
        let _ = writeln!(svg, r#"<rect x="{lx}" y="32" width="12" height="12" fill="{}"/>"#, colors[i % colors.len()]);
        let _ = writeln!(svg, r#"<text x="{}" y="42">{}</text>"#, lx + 16.0, escape(placement));
    }
    let ticks = [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0];
    for tick in ticks.into_iter().filter(|&t| t <= max_ratio * 1.5) {
        let tx = x(tick);
        // The 1× line is the floor itself.
        let stroke = if tick == 1.0 { "#333" } else { "#ddd" };
        let _ = writeln!(
            svg,
            r#"<line x1="{tx:.1}" y1="{top}" x2="{tx:.1}" y2="{:.1}" stroke="{stroke}"/>"#,
            height - 52.0
        );
        let _ = writeln!(svg, r#"<text x="{tx:.1}" y="{:.1}" text-anchor="middle">{tick}×</text>"#, height - 37.0);
    }
    let _ = writeln!(
        svg,
        r##"<text x="10" y="{:.1}" font-size="11" fill="#555">floors, same run: sockets = raw Unix socket; threads = crossbeam-channel; shared memory = raw futex</text>"##,
        height - 16.0
    );
    let _ = writeln!(
        svg,
        r##"<text x="10" y="{:.1}" font-size="11" fill="#555">ping-pong on one CPU (and for iceoryx2 event), pure-spin ping-pong across CPUs</text>"##,
        height - 3.0
    );
    for (m, mechanism) in mechanisms.iter().enumerate() {
        let gy = top + m as f64 * group;
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 8.0,
            gy + group / 2.0,
            escape(mechanism)
        );
        for (p, placement) in placements.iter().enumerate() {
            let Some(r) = bars.iter().find(|r| r.mechanism == *mechanism && r.placement == *placement) else {
                continue;
            };
            let y = gy + p as f64 * bar;
            let (x0, x1) = (x(0.5), x(r.ratio));
            let _ = writeln!(
                svg,
                r#"<rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}, {}: {:.2}× {}</title></rect>"#,
                (x1 - x0).max(1.0),
                bar - 2.0,
                colors[p % colors.len()],
                escape(mechanism),
                escape(placement),
                r.ratio,
                escape(&r.floor)
            );
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" font-size="10">{:.2}×</text>"#,
                x1 + 3.0,
                y + bar - 4.0,
                r.ratio
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(table: &str, placement: &str, mechanism: &str, metric: &str, value: f64, ratio: f64) -> Record {
        Record {
            table: table.into(),
            placement: placement.into(),
            mechanism: mechanism.into(),
            metric: metric.into(),
            value,
            floor: if ratio.is_finite() { "raw UDS".into() } else { String::new() },
            ratio,
        }
    }

    #[test]
    fn the_block_between_the_markers_is_replaced_and_nothing_else() {
        let text = "before\n<!-- ipcall-bench-peers: note -->\nold\n<!-- /ipcall-bench-peers -->\nafter\n";
        assert_eq!(
            replace_block(text, "new\n").unwrap(),
            "before\n<!-- ipcall-bench-peers: note -->\nnew\n<!-- /ipcall-bench-peers -->\nafter\n"
        );
        assert!(replace_block("no markers\n", "x").is_none());
        assert!(replace_block("<!-- /ipcall-bench-peers -->\n<!-- ipcall-bench-peers -->\n", "x").is_none());
    }

    #[test]
    fn tables_pivot_by_placement_and_the_chart_has_a_bar_per_ratio() {
        let records = vec![
            record("peers", "same CPU", "floor: raw UDS", "64 B p50 ns", 10_000.0, f64::NAN),
            record("peers", "same CPU", "zmq <ipc>", "64 B p50 ns", 30_000.0, 3.0),
            record("peers", "same CPU", "zmq <ipc>", "64 B p99 ns", 90_000.0, f64::NAN),
            record("peers", "cross CPU", "zmq <ipc>", "64 B p50 ns", 60_000.0, 1.2),
            record("peers", "cross CPU", "floor: raw shm spin", "64 B p50 ns", 600.0, f64::NAN),
            record("peers", "same CPU", "zmq <ipc>", "1 MiB GB/s", 1.5, 0.5),
            record("scaling", "N=8", "unix:", "calls/s", 80_000.0, 5.3),
            record("stream", "same CPU", "ipcall pipe:", "64 B p50 ns", 3_700.0, 1.7),
            record("stream", "same CPU", "ipcall unix:", "64 B p50 ns", 4_800.0, 1.3),
            Record {
                table: "peers-skipped".into(),
                metric: "no /dev/shm".into(),
                ..record("", "", "iceoryx2", "", 0.0, f64::NAN)
            },
        ];
        let text = markdown(&records, "docs/x.svg", "1.00 2.00 3.00 1/100 42");
        assert!(text.contains("load average 1.00 2.00 3.00 at the start, "), "{text}");
        let zmq = text.lines().find(|l| l.starts_with("| zmq <ipc>")).unwrap();
        let cells: Vec<&str> = zmq.split('|').map(str::trim).collect();
        // Floors first; all p50s before the GB/s column.
        assert_eq!(cells[1..6], ["zmq <ipc>", "raw UDS", "30,000 (3.00×)", "60,000 (1.20×)", "1.50 (0.50×)"], "{text}");
        assert!(text.find("floor: raw shm spin").unwrap() < text.find("| zmq <ipc>").unwrap(), "{text}");
        assert!(text.find("ipcall, its peers").unwrap() < text.find("The byte-stream").unwrap(), "{text}");
        assert!(text.find("The byte-stream").unwrap() < text.find("N-client scaling").unwrap(), "{text}");
        assert!(!text.contains("p99"), "{text}");
        assert!(text.contains("80 k (5.30×)"), "{text}");
        assert!(text.contains("- skipped iceoryx2: no /dev/shm"), "{text}");
        let svg = chart(&records);
        // zmq's two placements and stream's pipe row (its unix row is the peers table's).
        assert_eq!(svg.matches("<title>").count(), 3, "{svg}");
        assert!(svg.contains("ipcall pipe:"), "{svg}");
        assert!(svg.contains("zmq &lt;ipc&gt;"), "{svg}");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
    }

    #[test]
    fn dates_are_civil() {
        let date = utc_date();
        assert_eq!(date.len(), 10);
        assert!(date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-');
    }
}
