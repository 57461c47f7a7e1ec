//! Importing a ring from the configs operators already have: a carbon-c-relay `cluster` block,
//! or carbon.conf's `DESTINATIONS` with its router settings.

use super::{Algorithm, Error, Flavour, RingConfig, Router};

fn config_error(source_name: &str, reason: impl Into<String>) -> Error {
    Error::Config {
        source_name: source_name.to_string(),
        reason: reason.into(),
    }
}

/// A word of a relay config with the line it is on.
struct Token<'a> {
    text: &'a str,
    line: usize,
}

/// Splits a relay config into words: `#` comments dropped, `;` a word of its own.
fn tokens(text: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        for word in line.split_whitespace() {
            let mut rest = word;
            while let Some(at) = rest.find(';') {
                if at > 0 {
                    out.push(Token {
                        text: &rest[..at],
                        line: n + 1,
                    });
                }
                out.push(Token {
                    text: ";",
                    line: n + 1,
                });
                rest = &rest[at + 1..];
            }
            if !rest.is_empty() {
                out.push(Token {
                    text: rest,
                    line: n + 1,
                });
            }
        }
    }
    out
}

/// Member options of carbon-c-relay that take one argument.
const MEMBER_OPTIONS: [&str; 3] = ["proto", "type", "transport"];

/// Reads the consistent-hash cluster `cluster` (or the only one) from a carbon-c-relay config.
/// `source_name` names the file in errors.
///
/// # Errors
/// No such cluster, several candidates and none chosen, a cluster that is not consistent-hash
/// (forward, any_of, failover, file...), or a block that does not parse; each with the line.
pub fn parse_relay_config(
    text: &str,
    cluster: Option<&str>,
    source_name: &str,
) -> Result<RingConfig, Error> {
    let tokens = tokens(text);
    let mut found: Vec<(String, usize, Result<RingConfig, Error>)> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let end = tokens[i..]
            .iter()
            .position(|t| t.text == ";")
            .map_or(tokens.len(), |p| i + p);
        let statement = &tokens[i..end];
        if statement.first().is_some_and(|t| t.text == "cluster") {
            let line = statement[0].line;
            let name = statement.get(1).ok_or_else(|| {
                config_error(source_name, format!("line {line}: cluster without a name"))
            })?;
            found.push((
                name.text.to_string(),
                line,
                parse_cluster(statement, source_name),
            ));
        }
        i = end + 1;
    }
    let hashed: Vec<_> = found
        .iter()
        .filter(|(_, _, r)| !matches!(r, Err(Error::Invalid(_))))
        .collect();
    let chosen = match cluster {
        Some(name) => found
            .iter()
            .find(|(n, _, _)| n == name)
            .ok_or_else(|| config_error(source_name, format!("no cluster named '{name}'")))?,
        None => match hashed.as_slice() {
            [only] => *only,
            [] => {
                return Err(config_error(
                    source_name,
                    "no carbon_ch, fnv1a_ch or jump_fnv1a_ch cluster",
                ));
            }
            many => {
                let names: Vec<&str> = many.iter().map(|(n, _, _)| n.as_str()).collect();
                return Err(config_error(
                    source_name,
                    format!(
                        "several consistent-hash clusters ({}): choose one",
                        names.join(", ")
                    ),
                ));
            }
        },
    };
    match &chosen.2 {
        Ok(config) => Ok(config.clone()),
        Err(e) => Err(config_error(
            source_name,
            format!("cluster '{}' (line {}): {e}", chosen.0, chosen.1),
        )),
    }
}

/// `cluster NAME TYPE [replication N] [dynamic] MEMBER [options]... ;` for the hash types.
/// A cluster of another type is `Err(Error::Invalid)`.
fn parse_cluster(statement: &[Token<'_>], source_name: &str) -> Result<RingConfig, Error> {
    let kind = statement.get(2).map(|t| t.text).unwrap_or("");
    let algorithm = match kind {
        "carbon_ch" => Algorithm::CarbonCh,
        "fnv1a_ch" => Algorithm::Fnv1aCh,
        "jump_fnv1a_ch" => Algorithm::JumpFnv1aCh,
        other => {
            return Err(Error::Invalid(format!(
                "type '{other}' does not place metrics by hash"
            )));
        }
    };
    let mut rest = &statement[3..];
    let mut replication = 1;
    if rest.first().is_some_and(|t| t.text == "replication") {
        let t = rest
            .get(1)
            .ok_or_else(|| config_error(source_name, "replication without a count"))?;
        replication = t.text.parse().map_err(|_| {
            config_error(
                source_name,
                format!("line {}: replication '{}' is not a number", t.line, t.text),
            )
        })?;
        rest = &rest[2..];
    }
    if rest.first().is_some_and(|t| t.text == "dynamic") {
        rest = &rest[1..];
    }
    let mut members = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        let word = rest[i].text;
        if MEMBER_OPTIONS.contains(&word) {
            i += 2;
        } else if word == "ssl" || word == "mtls" {
            i += 1;
        } else {
            members.push(word.to_string());
            i += 1;
        }
    }
    let mut config = RingConfig::new(algorithm, Flavour::Relay, replication, members);
    config.diverse = false;
    Ok(config)
}

/// Reads the ring from carbon.conf's `section` (usually `relay`): DESTINATIONS,
/// REPLICATION_FACTOR (default 1), DIVERSE_REPLICAS (default true), ROUTER_HASH_TYPE (default
/// carbon_ch) and RELAY_METHOD (consistent-hashing or fast-hashing; when absent,
/// consistent-hashing, as carbonate assumes).
///
/// # Errors
/// No such section or no DESTINATIONS in it, a value that does not parse, or a RELAY_METHOD
/// that does not place by hash.
pub fn parse_carbon_conf(
    text: &str,
    section: &str,
    source_name: &str,
) -> Result<RingConfig, Error> {
    let mut in_section = false;
    let mut seen_section = false;
    let mut settings: Vec<(String, String, usize)> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_section = name.trim().eq_ignore_ascii_case(section);
            seen_section |= in_section;
            continue;
        }
        if !in_section {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .or_else(|| line.split_once(':'))
            .ok_or_else(|| {
                config_error(source_name, format!("line {}: expected KEY = VALUE", n + 1))
            })?;
        settings.push((
            key.trim().to_ascii_uppercase(),
            value.trim().to_string(),
            n + 1,
        ));
    }
    if !seen_section {
        return Err(config_error(source_name, format!("no [{section}] section")));
    }
    let get = |key: &str| settings.iter().rev().find(|(k, _, _)| k == key);
    let bad = |line: usize, key: &str, value: &str, expected: &str| {
        config_error(
            source_name,
            format!("line {line}: {key} = {value}: expected {expected}"),
        )
    };
    let (_, destinations, _) = get("DESTINATIONS")
        .ok_or_else(|| config_error(source_name, format!("no DESTINATIONS in [{section}]")))?;
    let destinations: Vec<String> = destinations
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(String::from)
        .collect();
    let replication = match get("REPLICATION_FACTOR") {
        Some((k, v, line)) => v.parse().map_err(|_| bad(*line, k, v, "a number"))?,
        None => 1,
    };
    let diverse = match get("DIVERSE_REPLICAS") {
        Some((k, v, line)) => match v.to_ascii_lowercase().as_str() {
            "1" | "yes" | "true" | "on" => true,
            "0" | "no" | "false" | "off" => false,
            _ => return Err(bad(*line, k, v, "True or False")),
        },
        None => true,
    };
    let algorithm = match get("ROUTER_HASH_TYPE") {
        Some((k, v, line)) => match v.as_str() {
            "carbon_ch" | "None" | "" => Algorithm::CarbonCh,
            "fnv1a_ch" => Algorithm::Fnv1aCh,
            "mmh3_ch" => Algorithm::Mmh3Ch,
            _ => return Err(bad(*line, k, v, "carbon_ch, fnv1a_ch or mmh3_ch")),
        },
        None => Algorithm::CarbonCh,
    };
    let router = match get("RELAY_METHOD") {
        Some((k, v, line)) => match v.as_str() {
            "consistent-hashing" => Router::ConsistentHashing,
            "fast-hashing" => Router::FastHashing,
            _ => {
                return Err(bad(
                    *line,
                    k,
                    v,
                    "consistent-hashing or fast-hashing (the others do not place by hash)",
                ));
            }
        },
        None => Router::ConsistentHashing,
    };
    Ok(RingConfig {
        algorithm,
        flavour: Flavour::Carbon,
        router,
        replication,
        diverse,
        destinations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELAY: &str = "
# main cluster
cluster graphite
    carbon_ch replication 2
        10.0.0.1:2003=a proto tcp
        10.0.0.2:2003=a transport gzip ssl
        10.0.0.3=b;   # trailing comment
cluster fw forward 10.9.9.9:2003 ;
match * send to graphite;
";

    #[test]
    fn relay_cluster_blocks() {
        let c = parse_relay_config(RELAY, None, "relay.conf").unwrap();
        assert_eq!(c.algorithm, Algorithm::CarbonCh);
        assert_eq!(c.replication, 2);
        assert_eq!(
            c.destinations,
            ["10.0.0.1:2003=a", "10.0.0.2:2003=a", "10.0.0.3=b"]
        );
        let err = parse_relay_config(RELAY, Some("fw"), "relay.conf")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("relay.conf") && err.contains("forward"),
            "{err}"
        );
        let err = parse_relay_config(RELAY, Some("nope"), "relay.conf")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no cluster named 'nope'"), "{err}");
        let two = format!("{RELAY}\ncluster b jump_fnv1a_ch h1 h2;");
        let err = parse_relay_config(&two, None, "r").unwrap_err().to_string();
        assert!(err.contains("graphite, b"), "{err}");
        assert_eq!(
            parse_relay_config(&two, Some("b"), "r")
                .unwrap()
                .destinations,
            ["h1", "h2"]
        );
    }

    #[test]
    fn carbon_conf_relay_section() {
        let conf = "[cache]\nDESTINATIONS = x:1\n[relay]\nRELAY_METHOD = consistent-hashing\n\
                    REPLICATION_FACTOR = 2\nDIVERSE_REPLICAS = False\n\
                    DESTINATIONS = 127.0.0.1:2004:a, 127.0.0.1:2104:b,10.0.0.2:2004:a\n";
        let c = parse_carbon_conf(conf, "relay", "carbon.conf").unwrap();
        assert_eq!(
            (c.replication, c.diverse, c.router),
            (2, false, Router::ConsistentHashing)
        );
        assert_eq!(c.destinations.len(), 3, "{:?}", c.destinations);
        let err = parse_carbon_conf(
            "[relay]\nRELAY_METHOD = rules\nDESTINATIONS = a:1\n",
            "relay",
            "c.conf",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("c.conf") && err.contains("line 2") && err.contains("rules"),
            "{err}"
        );
        let err = parse_carbon_conf("[cache]\n", "relay", "c.conf")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no [relay] section"), "{err}");
    }
}
