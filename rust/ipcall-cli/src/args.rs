//! The parsed arguments of one subcommand, taken from clap's matches in a
//! shape the commands read: options with values by their `--long` name,
//! switches, and positionals in order. Parsing itself (and its errors, with
//! suggestions for mistyped options) is clap's, from [`crate::cli`].

use std::collections::{HashMap, HashSet};

use clap::{ArgAction, ArgMatches, Command};
use ipcall::{check_connection_name, WaitMode};

use crate::failure::Failure;

/// The parsed arguments of one subcommand.
#[derive(Debug, Default)]
pub struct Args {
    /// Positional arguments, in order (`-` included).
    pub positionals: Vec<String>,
    /// Options that take a value, by their name (`"--timeout"`); the last
    /// occurrence wins.
    values: HashMap<String, String>,
    /// Switches that were given, by their name (`"--echo"`).
    switches: HashSet<String>,
}

impl Args {
    /// The arguments of `command` (a subcommand of [`crate::cli::command`])
    /// as clap matched them.
    pub fn from_matches(command: &Command, matches: &ArgMatches) -> Args {
        let mut args = Args::default();
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if arg.is_positional() {
                if let Some(values) = matches.get_many::<String>(id) {
                    args.positionals.extend(values.cloned());
                }
            } else if matches!(arg.get_action(), ArgAction::SetTrue) {
                if matches.get_flag(id) {
                    args.switches.insert(format!("--{id}"));
                }
            } else if let Some(value) = matches.get_one::<String>(id) {
                args.values.insert(format!("--{id}"), value.clone());
            }
        }
        args
    }

    /// The arguments again as a command line (positionals first, then
    /// options and switches in a stable order), without the flags in `skip`.
    pub fn command_line(&self, skip: &[&str]) -> Vec<String> {
        let mut line = self.positionals.clone();
        let mut values: Vec<_> = self.values.iter().filter(|(k, _)| !skip.contains(&k.as_str())).collect();
        values.sort();
        for (flag, value) in values {
            line.push(format!("{flag}={value}"));
        }
        let mut switches: Vec<_> = self.switches.iter().filter(|s| !skip.contains(&s.as_str())).collect();
        switches.sort();
        line.extend(switches.into_iter().cloned());
        line
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

    /// The value of `--wait-mode`, if given.
    pub fn wait_mode(&self) -> Result<Option<WaitMode>, Failure> {
        self.value("--wait-mode")
            .map(|text| text.parse().map_err(|e| Failure::usage(format!("--wait-mode: {e}"))))
            .transpose()
    }

    /// The value of `--connection-name`, if given and valid (1 to 256
    /// bytes without control characters).
    pub fn connection_name(&self) -> Result<Option<&str>, Failure> {
        self.value("--connection-name")
            .map(|text| {
                check_connection_name(text).map_err(|reason| Failure::usage(format!("--connection-name: {reason}")))?;
                Ok(text)
            })
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

    /// Parses `line` (after `ipcall`) and returns the subcommand's Args.
    fn parse(line: &[&str]) -> Args {
        let command = crate::cli::command();
        let matches =
            command.clone().try_get_matches_from(std::iter::once("ipcall").chain(line.iter().copied())).unwrap();
        let (name, sub_matches) = matches.subcommand().unwrap();
        Args::from_matches(command.find_subcommand(name).unwrap(), sub_matches)
    }

    #[test]
    fn options_switches_and_positionals() {
        let args = parse(&["call", "unix:@x", "-", "--timeout", "50", "--max-size=9"]);
        assert_eq!(args.positionals, ["unix:@x", "-"]);
        assert_eq!(args.number::<u64>("--timeout").unwrap(), Some(50));
        assert_eq!(args.value("--max-size"), Some("9"));
        let serve = parse(&["serve", "unix:@x", "--echo", "--one-shot"]);
        assert!(serve.switch("--one-shot") && serve.switch("--echo"));
        assert!(!serve.switch("--help"));
        assert_eq!(serve.value("--exec"), None);
    }

    #[test]
    fn double_dash_ends_options() {
        let args = parse(&["call", "n", "--", "--timeout"]);
        assert_eq!(args.positionals, ["n", "--timeout"]);
    }

    #[test]
    fn wait_modes_and_connection_names() {
        let args = parse(&["call", "n", "--wait-mode", "spin", "--connection-name", "cli caller"]);
        assert_eq!(args.wait_mode().unwrap(), Some(WaitMode::Spin));
        assert_eq!(args.connection_name().unwrap(), Some("cli caller"));
        let none = parse(&["serve", "n", "--echo"]);
        assert_eq!((none.wait_mode().unwrap(), none.connection_name().unwrap()), (None, None));
        // clap lists the core's spellings.
        assert_eq!(crate::cli::WAIT_MODES, WaitMode::ALL.map(WaitMode::as_str));
        for bad in ["", "a\tb"] {
            let args = parse(&["call", "n", "--connection-name", bad]);
            assert_eq!(args.connection_name().unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn numbers_that_do_not_parse_are_usage_errors() {
        let args = parse(&["call", "n", "--timeout", "soon"]);
        assert_eq!(args.number::<u64>("--timeout").unwrap_err().exit_code(), 2);
    }
}
