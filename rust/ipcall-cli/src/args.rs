//! A small command-line parser: options with values, switches, positionals.
//!
//! Hand-rolled rather than a dependency because the four subcommands need
//! only this, and exit codes and messages stay entirely ours.

use std::collections::{HashMap, HashSet};

use crate::failure::Failure;

/// The parsed arguments of one subcommand.
#[derive(Debug, Default)]
pub struct Args {
    /// Arguments that are not options, in order (`-` included).
    pub positionals: Vec<String>,
    /// Options that take a value, by their name (`"--timeout"`); the last
    /// occurrence wins.
    values: HashMap<&'static str, String>,
    /// Switches that were given.
    switches: HashSet<&'static str>,
}

impl Args {
    /// Parses `args` for subcommand `command`, which accepts the options in
    /// `with_value` and the switches in `switches` (`--help`/`-h` is always a
    /// switch, recorded as `"--help"`).
    pub fn parse(
        command: &str,
        args: &[String],
        with_value: &[&'static str],
        switches: &[&'static str],
    ) -> Result<Args, Failure> {
        let mut parsed = Args::default();
        let mut rest = args.iter();
        let mut only_positionals = false;
        while let Some(arg) = rest.next() {
            if only_positionals || arg == "-" || !arg.starts_with('-') {
                parsed.positionals.push(arg.clone());
                continue;
            }
            if arg == "--" {
                only_positionals = true;
                continue;
            }
            if arg == "-h" || arg == "--help" {
                parsed.switches.insert("--help");
                continue;
            }
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag, Some(value.to_string())),
                None => (arg.as_str(), None),
            };
            if let Some(&known) = with_value.iter().find(|&&f| f == flag) {
                let value = match inline {
                    Some(value) => value,
                    None => rest.next().cloned().ok_or_else(|| Failure::usage(format!("{flag} needs a value")))?,
                };
                parsed.values.insert(known, value);
            } else if let Some(&known) = switches.iter().find(|&&f| f == flag) {
                if inline.is_some() {
                    return Err(Failure::usage(format!("{flag} takes no value")));
                }
                parsed.switches.insert(known);
            } else {
                return Err(Failure::usage(format!("unknown option {flag} (see `ipcall {command} --help`)")));
            }
        }
        Ok(parsed)
    }

    /// The value of option `flag`, if given.
    pub fn value(&self, flag: &str) -> Option<&str> {
        self.values.get(flag).map(String::as_str)
    }

    /// The value of option `flag` parsed as a number, if given.
    pub fn number<T: std::str::FromStr>(&self, flag: &str) -> Result<Option<T>, Failure>
    where
        T::Err: std::fmt::Display,
    {
        self.value(flag)
            .map(|text| text.parse::<T>().map_err(|e| Failure::usage(format!("{flag} {text:?}: {e}"))))
            .transpose()
    }

    /// Whether switch `flag` was given.
    pub fn switch(&self, flag: &str) -> bool {
        self.switches.contains(flag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_switches_and_positionals() {
        let args = Args::parse(
            "call",
            &strings(&["unix:@x", "-", "--timeout", "50", "--one-shot", "--max-size=9"]),
            &["--timeout", "--max-size"],
            &["--one-shot"],
        )
        .unwrap();
        assert_eq!(args.positionals, ["unix:@x", "-"]);
        assert_eq!(args.number::<u64>("--timeout").unwrap(), Some(50));
        assert_eq!(args.value("--max-size"), Some("9"));
        assert!(args.switch("--one-shot"));
        assert!(!args.switch("--help"));
    }

    #[test]
    fn double_dash_ends_options() {
        let args = Args::parse("call", &strings(&["n", "--", "--timeout"]), &["--timeout"], &[]).unwrap();
        assert_eq!(args.positionals, ["n", "--timeout"]);
    }

    #[test]
    fn usage_errors() {
        for bad in [&["--nope"][..], &["--timeout"], &["--one-shot=1"]] {
            let failure = Args::parse("x", &strings(bad), &["--timeout"], &["--one-shot"]).unwrap_err();
            assert_eq!(failure.exit_code(), 2, "{bad:?}");
        }
        let args = Args::parse("x", &strings(&["--timeout", "soon"]), &["--timeout"], &[]).unwrap();
        assert_eq!(args.number::<u64>("--timeout").unwrap_err().exit_code(), 2);
    }
}
