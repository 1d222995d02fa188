//! Results that outlive one bench: when `IPCALL_BENCH_RESULTS` names a
//! directory (`make bench` sets it), a bench writes its rows there as
//! `<bench>.tsv`, and `bench-report` (benches/src/bin/bench_report.rs) turns
//! every file of the run into the README's table and the ratio chart.
//!
//! One line per value, tab-separated: table, placement, mechanism, metric,
//! value, floor (the mechanism the ratio is taken against, or empty), ratio
//! (or empty). The Node and Python benches write the same format.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

/// The environment variable naming the results directory.
pub const RESULTS_ENV: &str = "IPCALL_BENCH_RESULTS";

/// One measured value.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Which table of the report it belongs to ("peers", "scaling", "node", "python").
    pub table: String,
    /// "same CPU", "cross CPU", or a column such as "N=8".
    pub placement: String,
    /// What was measured ("zmq REQ/REP ipc://").
    pub mechanism: String,
    /// The metric ("64 B p50 ns", "1 MiB GB/s", "calls/s").
    pub metric: String,
    /// The value, in the metric's unit.
    pub value: f64,
    /// The floor the ratio is taken against (empty: no ratio).
    pub floor: String,
    /// value / the floor's value, as the benches print it (for a latency
    /// above 1 is slower than the floor, for a throughput below 1 is);
    /// NaN: none.
    pub ratio: f64,
}

impl Record {
    fn line(&self) -> String {
        let clean = |s: &str| s.replace(['\t', '\n'], " ");
        let ratio = if self.ratio.is_finite() { format!("{}", self.ratio) } else { String::new() };
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            clean(&self.table),
            clean(&self.placement),
            clean(&self.mechanism),
            clean(&self.metric),
            self.value,
            clean(&self.floor),
            ratio
        )
    }

    /// Parses one line written by [`write`] (or the Node/Python benches).
    pub fn parse(line: &str) -> Option<Record> {
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != 7 {
            return None;
        }
        Some(Record {
            table: fields[0].to_string(),
            placement: fields[1].to_string(),
            mechanism: fields[2].to_string(),
            metric: fields[3].to_string(),
            value: fields[4].parse().ok()?,
            floor: fields[5].to_string(),
            ratio: if fields[6].is_empty() { f64::NAN } else { fields[6].parse().ok()? },
        })
    }
}

/// The results directory of this run, if `make bench` set one.
pub fn results_dir() -> Option<PathBuf> {
    std::env::var_os(RESULTS_ENV).filter(|d| !d.is_empty()).map(PathBuf::from)
}

/// Writes `records` as `<dir>/<bench>.tsv` when [`results_dir`] is set
/// (replacing an older file of the same bench); does nothing otherwise.
pub fn write(bench: &str, records: &[Record]) -> io::Result<()> {
    let Some(dir) = results_dir() else { return Ok(()) };
    std::fs::create_dir_all(&dir)?;
    let mut text = String::new();
    for record in records {
        let _ = write!(text, "{}", record.line());
    }
    std::fs::write(dir.join(format!("{bench}.tsv")), text)
}

/// Every record of every `*.tsv` file in `dir`, files in name order; lines
/// that do not parse are returned as errors (with file and line).
pub fn read_dir(dir: &Path) -> io::Result<Vec<Record>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tsv"))
        .collect();
    files.sort();
    let mut records = Vec::new();
    for file in files {
        for (n, line) in std::fs::read_to_string(&file)?.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let record = Record::parse(line).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("{}:{}: not a result line", file.display(), n + 1))
            })?;
            records.push(record);
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_their_line() {
        let record = Record {
            table: "peers".into(),
            placement: "cross CPU".into(),
            mechanism: "zmq\tREQ".into(),
            metric: "64 B p50 ns".into(),
            value: 1234.5,
            floor: "raw UDS".into(),
            ratio: 1.5,
        };
        let parsed = Record::parse(record.line().trim_end_matches('\n')).unwrap();
        assert_eq!(parsed.mechanism, "zmq REQ");
        assert_eq!(parsed.value, 1234.5);
        assert_eq!(parsed.ratio, 1.5);
        let no_ratio = Record { ratio: f64::NAN, floor: String::new(), ..record };
        assert!(Record::parse(no_ratio.line().trim_end_matches('\n')).unwrap().ratio.is_nan());
        assert!(Record::parse("too\tfew").is_none());
        assert!(Record::parse("a\tb\tc\td\tnot-a-number\tf\t").is_none());
    }

    #[test]
    fn read_dir_reads_every_tsv_and_rejects_a_bad_line() {
        let dir = std::env::temp_dir().join(format!("ipcall-report-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.tsv"), "t\tp\tm\tx\t1\t\t\n").unwrap();
        std::fs::write(dir.join("b.tsv"), "t\tp\tm2\tx\t2\tf\t2\n\n").unwrap();
        std::fs::write(dir.join("ignored.txt"), "junk").unwrap();
        let records = read_dir(&dir).unwrap();
        assert_eq!(records.iter().map(|r| r.mechanism.as_str()).collect::<Vec<_>>(), ["m", "m2"]);
        std::fs::write(dir.join("c.tsv"), "junk\n").unwrap();
        let error = read_dir(&dir).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
