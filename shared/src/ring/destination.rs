//! Destination strings: carbon's `host:port[:instance]` and carbon-c-relay's
//! `host[:port][=instance]`, validated, with the entry named in every error.

use super::{Error, Flavour};

/// The relay's port when a member names none.
const RELAY_DEFAULT_PORT: u16 = 2003;

/// One destination of a ring.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Destination {
    /// Exactly as written in the config; owners are reported this way.
    pub text: String,
    /// Host as hashed (IPv6 without brackets).
    pub host: String,
    /// Port (never hashed by carbon; hashed by the relay's fnv1a_ch without instance).
    pub port: u16,
    /// Instance, if any (the relay's all-digit instances are normalised: `01` is `1`).
    pub instance: Option<String>,
}

/// Parses every destination and refuses the same node twice: carbon keys nodes by
/// `(host, instance)`, the relay by `host:port`.
pub(crate) fn parse_all(entries: &[String], flavour: Flavour) -> Result<Vec<Destination>, Error> {
    let mut out: Vec<Destination> = Vec::with_capacity(entries.len());
    for entry in entries {
        let d = match flavour {
            Flavour::Carbon => parse_carbon(entry)?,
            Flavour::Relay => parse_relay(entry)?,
        };
        let same = |o: &&Destination| match flavour {
            Flavour::Carbon => o.host == d.host && o.instance == d.instance,
            Flavour::Relay => o.host == d.host && o.port == d.port,
        };
        if let Some(first) = out.iter().find(same) {
            return Err(Error::DuplicateDestination {
                entry: entry.clone(),
                first: first.text.clone(),
            });
        }
        out.push(d);
    }
    Ok(out)
}

fn invalid(entry: &str, reason: impl Into<String>) -> Error {
    Error::InvalidDestination {
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

/// Splits `[v6]rest` or `host rest` at the first of `separators` after the host.
fn split_host<'a>(
    entry: &str,
    s: &'a str,
    separators: &[char],
) -> Result<(&'a str, &'a str), Error> {
    if let Some(bracketed) = s.strip_prefix('[') {
        let close = bracketed
            .find(']')
            .ok_or_else(|| invalid(entry, "'[' without a closing ']'"))?;
        Ok((&bracketed[..close], &bracketed[close + 1..]))
    } else {
        let at = s.find(separators).unwrap_or(s.len());
        Ok((&s[..at], &s[at..]))
    }
}

fn parse_port(entry: &str, text: &str) -> Result<u16, Error> {
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(invalid(
            entry,
            format!("port '{text}' is not a number from 1 to 65535"),
        )),
        Ok(port) => Ok(port),
    }
}

/// carbon's `parseDestination`: `host:port[:instance]`, `[v6]:port[:instance]`.
pub(crate) fn parse_carbon(entry: &str) -> Result<Destination, Error> {
    let s = entry.trim();
    let (host, rest) = split_host(entry, s, &[':'])?;
    if host.is_empty() {
        return Err(invalid(entry, "empty host"));
    }
    let rest = rest
        .strip_prefix(':')
        .ok_or_else(|| invalid(entry, "expected host:port[:instance]"))?;
    let (port, instance) = match rest.split_once(':') {
        Some((port, instance)) => (port, Some(instance)),
        None => (rest, None),
    };
    if instance == Some("") {
        return Err(invalid(entry, "empty instance after ':'"));
    }
    Ok(Destination {
        text: entry.to_string(),
        host: host.to_string(),
        port: parse_port(entry, port)?,
        instance: instance.map(str::to_string),
    })
}

/// carbon-c-relay's member syntax: `host[:port][=instance]`, `[v6][:port][=instance]`.
pub(crate) fn parse_relay(entry: &str) -> Result<Destination, Error> {
    let s = entry.trim();
    let (host, rest) = split_host(entry, s, &[':', '='])?;
    if host.is_empty() {
        return Err(invalid(entry, "empty host"));
    }
    let (port_part, instance) = match rest.split_once('=') {
        Some((p, i)) => (p, Some(i)),
        None => (rest, None),
    };
    let port = match port_part {
        "" => RELAY_DEFAULT_PORT,
        p => parse_port(
            entry,
            p.strip_prefix(':')
                .ok_or_else(|| invalid(entry, "expected host[:port][=instance]"))?,
        )?,
    };
    let instance = match instance {
        Some("") => return Err(invalid(entry, "empty instance after '='")),
        Some(i) if i.bytes().all(|b| b.is_ascii_digit()) => {
            // The relay reads an all-digit instance as an integer.
            let trimmed = i.trim_start_matches('0');
            Some(if trimmed.is_empty() { "0" } else { trimmed }.to_string())
        }
        other => other.map(str::to_string),
    };
    Ok(Destination {
        text: entry.to_string(),
        host: host.to_string(),
        port,
        instance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carbon_syntax() {
        let d = parse_carbon("graphite-01:2004:a").unwrap();
        assert_eq!(
            (d.host.as_str(), d.port, d.instance.as_deref()),
            ("graphite-01", 2004, Some("a"))
        );
        let d = parse_carbon("[::1]:2104").unwrap();
        assert_eq!((d.host.as_str(), d.port, d.instance), ("::1", 2104, None));
        for (bad, why) in [
            ("host", "host:port"),
            (":2004", "empty host"),
            ("h:99999", "port '99999'"),
            ("h:x", "port 'x'"),
            ("h:2004:", "empty instance"),
        ] {
            let err = parse_carbon(bad).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn relay_syntax() {
        let d = parse_relay("store1").unwrap();
        assert_eq!((d.port, d.instance), (2003, None));
        let d = parse_relay("[::1]=alpha").unwrap();
        assert_eq!(
            (d.host.as_str(), d.port, d.instance.as_deref()),
            ("::1", 2003, Some("alpha"))
        );
        let d = parse_relay("10.0.0.1:2104=01").unwrap();
        assert_eq!((d.port, d.instance.as_deref()), (2104, Some("1")));
        assert!(
            parse_relay("h:0")
                .unwrap_err()
                .to_string()
                .contains("'h:0'")
        );
    }

    #[test]
    fn duplicates_are_named() {
        let entries = vec!["a:2004:x".to_string(), "b:2004".into(), "a:2104:x".into()];
        let err = parse_all(&entries, Flavour::Carbon)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'a:2104:x'") && err.contains("'a:2004:x'"),
            "{err}"
        );
        // Different instances on one host are distinct carbon nodes; one host:port is one relay member.
        let entries = vec!["a:2004:x".to_string(), "a:2004:y".into()];
        assert!(parse_all(&entries, Flavour::Carbon).is_ok());
        let entries = vec!["a:2004=x".to_string(), "a:2004=y".into()];
        assert!(parse_all(&entries, Flavour::Relay).is_err());
    }
}
