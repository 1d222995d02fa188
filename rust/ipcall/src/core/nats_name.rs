//! `nats:` names: `nats://[user:pass@]host:port[,host:port…]/subject`.
//!
//! Parsing lives here (built with or without the `nats` feature, so that a
//! name is validated the same way everywhere). Credentials are split off at
//! parse time: the printable name — what `name()`, errors and the CLI show —
//! never contains them; they travel beside it in [`Name`](crate::Name) and
//! reach only the NATS connection.

use std::fmt;

/// The default NATS port.
pub(crate) const DEFAULT_PORT: u16 = 4222;
/// The environment variable naming the NATS server(s) for `bind_unique` and
/// the credentials for names that carry none.
pub(crate) const URL_ENV: &str = "IPCALL_NATS_URL";
/// `IPCALL_NATS_URL` when it is not set.
pub(crate) const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// Credentials taken out of a name. Their `Debug` shows no secret.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Credentials {
    /// `user:pass@`.
    UserPassword(String, String),
    /// `token@`.
    Token(String),
}

impl Credentials {
    /// The secret strings, for scrubbing them out of foreign error text.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn secrets(&self) -> Vec<&str> {
        match self {
            Credentials::UserPassword(user, pass) => vec![user.as_str(), pass.as_str()],
            Credentials::Token(token) => vec![token.as_str()],
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(<hidden>)")
    }
}

/// A parsed `nats:` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Address {
    /// `host:port` of each NATS server to try, in order.
    pub(crate) servers: Vec<String>,
    /// The subject servers of this name listen on.
    pub(crate) subject: String,
    pub(crate) credentials: Option<Credentials>,
}

impl Address {
    /// Parses the whole name text (starting with `nats:`). Errors carry a
    /// reason only; the caller attaches the [`redact`]ed text.
    pub(crate) fn parse(text: &str) -> Result<Address, &'static str> {
        let rest = text.strip_prefix("nats://").ok_or("a nats name is nats://host:port/subject")?;
        let (authority, subject) = rest.split_once('/').ok_or("missing /subject after the server address")?;
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let credentials = match userinfo {
            None => None,
            Some("") => return Err("empty credentials before @"),
            Some(info) => Some(match info.split_once(':') {
                Some((user, pass)) => Credentials::UserPassword(percent_decode(user)?, percent_decode(pass)?),
                None => Credentials::Token(percent_decode(info)?),
            }),
        };
        if hosts.is_empty() {
            return Err("missing NATS server address (host:port)");
        }
        let servers = hosts.split(',').map(host_port).collect::<Result<Vec<_>, _>>()?;
        validate_subject(subject)?;
        Ok(Address { servers, subject: subject.to_owned(), credentials })
    }

    /// The printable name: no credentials.
    pub(crate) fn printable(&self) -> String {
        format!("nats://{}/{}", self.servers.join(","), self.subject)
    }
}

/// `host[:port]` → `host:port`; IPv6 hosts in brackets.
fn host_port(part: &str) -> Result<String, &'static str> {
    if part.is_empty() {
        return Err("empty server address in the list");
    }
    let (host, port) = if let Some(v6) = part.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("unclosed [ in an IPv6 server address")?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or("expected :port after ]")?)),
        }
    } else {
        match part.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (part, None),
        }
    };
    if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':')) {
        return Err("server host must be a host name or an IP address");
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p.parse::<u16>().ok().filter(|&p| p != 0).ok_or("server port must be a number from 1 to 65535")?,
    };
    Ok(if part.starts_with('[') { format!("[{host}]:{port}") } else { format!("{host}:{port}") })
}

/// A subject ipcall serves: dot-separated tokens of printable characters,
/// no wildcards (a server of `a.*` would answer for names it does not
/// hold), and not in the `_ipcall.` space the transport uses itself.
fn validate_subject(subject: &str) -> Result<(), &'static str> {
    if subject.is_empty() {
        return Err("empty subject after the server address");
    }
    if subject.len() > 1024 {
        return Err("subject longer than 1024 bytes");
    }
    if subject.split('.').any(str::is_empty) {
        return Err("subject has an empty token (leading, trailing or double dot)");
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control() || c == '/') {
        return Err("subject contains whitespace, a control character or /");
    }
    if subject.split('.').any(|t| t == "*" || t == ">") {
        return Err("subject contains a wildcard (* or >)");
    }
    if subject.starts_with("_ipcall.") || subject.starts_with("_INBOX.") || subject.starts_with("$") {
        return Err("subject is in a reserved space (_ipcall., _INBOX., $)");
    }
    Ok(())
}

/// Decodes `%XX` escapes (a password may hold `@`, `:` or `/`).
fn percent_decode(s: &str) -> Result<String, &'static str> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or("bad %-escape in the credentials")?;
            let hex = std::str::from_utf8(hex).map_err(|_| "bad %-escape in the credentials")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "bad %-escape in the credentials")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "credentials are not UTF-8")
}

/// `text` with anything that could be credentials (between `//` and the
/// last `@` of the server part) replaced by `***`, for error messages about
/// a name that did not parse.
pub(crate) fn redact(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("//") else {
        return text.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}//***{}", &rest[at..]),
        None => text.to_owned(),
    }
}

/// The URL `bind_unique` uses: `IPCALL_NATS_URL`, else the local default.
pub(crate) fn default_url() -> String {
    match std::env::var(URL_ENV) {
        Ok(url) if !url.is_empty() => url.trim_end_matches('/').to_owned(),
        _ => DEFAULT_URL.to_owned(),
    }
}

/// Credentials from `IPCALL_NATS_URL`, for names that carry none.
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(crate) fn env_credentials() -> Option<Credentials> {
    let url = std::env::var(URL_ENV).ok()?;
    Address::parse(&format!("{}/x", url.trim_end_matches('/'))).ok()?.credentials
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_servers_subject_and_credentials() {
        let a = Address::parse("nats://bob:s%40cret@h1:4333,[::1],h3/app.jobs").unwrap();
        assert_eq!(a.servers, ["h1:4333", "[::1]:4222", "h3:4222"]);
        assert_eq!(a.subject, "app.jobs");
        assert_eq!(a.credentials, Some(Credentials::UserPassword("bob".into(), "s@cret".into())));
        assert_eq!(a.printable(), "nats://h1:4333,[::1]:4222,h3:4222/app.jobs");
        assert!(!format!("{a:?}").contains("cret"));
        let t = Address::parse("nats://tok@h/x").unwrap();
        assert_eq!(t.credentials, Some(Credentials::Token("tok".into())));
    }

    #[test]
    fn refuses_bad_addresses() {
        for bad in [
            "nats:h/x",
            "nats://h",
            "nats://h/",
            "nats:///x",
            "nats://h:0/x",
            "nats://h:99999/x",
            "nats://h:4222/a..b",
            "nats://h/a.*",
            "nats://h/a.>",
            "nats://h/a b",
            "nats://@h/x",
            "nats://h,/x",
            "nats://h/_ipcall.x",
            "nats://u:%zz@h/x",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redaction_hides_userinfo() {
        assert_eq!(redact("nats://u:p@h:1/x y"), "nats://***@h:1/x y");
        assert_eq!(redact("nats://h:1/x"), "nats://h:1/x");
        assert_eq!(redact("nats://u:p@"), "nats://***@");
    }
}
