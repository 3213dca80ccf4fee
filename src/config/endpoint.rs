//! Registry endpoints, checked strictly: `https://host[:port]` (or `http://` written out), no
//! credentials, path, query or fragment, a host that is a DNS name, an IPv4 address or a
//! bracketed IPv6 address, and a port from 1 to 65535. Each problem has its own message.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Why an endpoint is refused: what is wrong, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointError {
    pub message: String,
    pub help: &'static str,
    /// Credentials written into the endpoint: the message shows them as `***`, and whoever
    /// prints the source line must mask them too.
    pub secret: Option<String>,
}

const FORM: &str =
    "write https://host[:port] (http:// only for a registry without TLS), with no path";

fn err(message: String, help: &'static str) -> EndpointError {
    EndpointError {
        message,
        help,
        secret: None,
    }
}

/// Check an endpoint (trailing slashes already removed); its `host[:port]` when valid.
pub fn check(url: &str) -> Result<&str, EndpointError> {
    // Credentials first, so that no other message repeats them.
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority_end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    if let Some((userinfo, _)) = after_scheme[..authority_end].rsplit_once('@') {
        let masked = url.replacen(userinfo, "***", 1).escape_debug().to_string();
        return Err(EndpointError {
            secret: Some(userinfo.to_string()),
            ..err(
                format!("endpoint `{masked}` contains credentials (`user:password@`)"),
                "credentials never go in the file: remove them and set auth = \"basic\" with username and password_env, or auth = \"docker\"",
            )
        });
    }
    let shown = url.escape_debug().to_string();
    if url.chars().any(char::is_whitespace) {
        return Err(err(
            format!("endpoint `{shown}` contains whitespace"),
            "remove the spaces: an endpoint is https://host[:port]",
        ));
    }
    if url.chars().any(char::is_control) {
        return Err(err(
            format!("endpoint `{shown}` contains a control character"),
            FORM,
        ));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(err(format!("endpoint `{shown}` has no scheme"), FORM));
    };
    if scheme != "https" && scheme != "http" {
        return Err(err(
            format!(
                "endpoint `{shown}` uses the scheme `{scheme}`: only https and http are supported"
            ),
            FORM,
        ));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if let Some(t) = tail.chars().next() {
        let what = match t {
            '?' => "a query (`?…`)",
            '#' => "a fragment (`#…`)",
            _ => "a path",
        };
        return Err(err(format!("endpoint `{shown}` has {what}"), FORM));
    }
    let (host, port) =
        split_port(authority).map_err(|m| err(format!("endpoint `{shown}` {m}"), FORM))?;
    check_host(host).map_err(|m| err(format!("endpoint `{shown}` {m}"), FORM))?;
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p));
        if !valid {
            return Err(err(
                format!("endpoint `{shown}` has an invalid port `{port}`"),
                "a port is a number from 1 to 65535, e.g. https://registry.example:5000",
            ));
        }
    }
    Ok(authority)
}

/// `host` and the text after `:`, if any (IPv6 addresses are bracketed).
fn split_port(authority: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(inner) = authority.strip_prefix('[') {
        let Some((addr, after)) = inner.split_once(']') else {
            return Err("has an unclosed `[` in its host".into());
        };
        if addr.parse::<Ipv6Addr>().is_err() {
            return Err(format!("has an invalid IPv6 address `[{addr}]`"));
        }
        return match after {
            "" => Ok((authority, None)),
            a => match a.strip_prefix(':') {
                Some(port) => Ok((&authority[..addr.len() + 2], Some(port))),
                None => Err(format!("has `{a}` after its IPv6 address")),
            },
        };
    }
    Ok(match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

/// A DNS name (labels of letters, digits and inner hyphens), or an IPv4 address when the last
/// label is a number (as URL parsers read it), or an already checked `[IPv6]`.
fn check_host(host: &str) -> Result<(), String> {
    if host.starts_with('[') {
        return Ok(());
    }
    if host.is_empty() {
        return Err("has no host".into());
    }
    if host.len() > 253 {
        return Err("has a host longer than 253 characters".into());
    }
    let labels: Vec<&str> = host.split('.').collect();
    for label in &labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "has an invalid host `{host}`: use letters, digits, hyphens and dots (labels of 1 to 63 characters, no leading or trailing hyphen)"
            ));
        }
    }
    let last = labels.last().copied().unwrap_or_default();
    if last.bytes().all(|b| b.is_ascii_digit()) && host.parse::<Ipv4Addr>().is_err() {
        return Err(format!("has an invalid IPv4 address `{host}`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_endpoints_give_their_authority() {
        for (url, authority) in [
            ("https://acraks0001.azurecr.io", "acraks0001.azurecr.io"),
            ("http://127.0.0.1:5000", "127.0.0.1:5000"),
            ("https://localhost", "localhost"),
            (
                "https://registry-1.docker.io:443",
                "registry-1.docker.io:443",
            ),
            ("https://[::1]:5000", "[::1]:5000"),
            ("https://[2001:db8::1]", "[2001:db8::1]"),
            ("https://Registry.Example:65535", "Registry.Example:65535"),
            ("https://a:1", "a:1"),
        ] {
            assert_eq!(check(url), Ok(authority), "{url}");
        }
    }

    #[test]
    fn bad_endpoints_say_what_is_wrong() {
        for (url, says) in [
            ("https://r.example:99999", "invalid port `99999`"),
            ("https://r.example:0", "invalid port `0`"),
            ("https://r.example:", "invalid port ``"),
            ("https://r.example:+80", "invalid port `+80`"),
            ("https://r.example:080808", "invalid port"),
            ("https://r.example:5000:1", "invalid port `5000:1`"),
            ("https://r .example", "whitespace"),
            ("https://r.example ", "whitespace"),
            ("https://r.example\t", "whitespace"),
            ("https://r.exa\u{7}mple", "control character"),
            (
                "https://user:pw@r.example",
                "`https://***@r.example` contains credentials",
            ),
            ("https://u:p@ss@r.example", "`https://***@r.example`"),
            (
                "https://ci:hunter 2@r.example",
                "`https://***@r.example` contains credentials",
            ),
            ("https://user@r.example", "credentials"),
            ("https://r.example?x=1", "a query"),
            ("https://r.example/?x=1", "a path"),
            ("https://r.example#frag", "a fragment"),
            ("https://r.example/v2", "a path"),
            ("ftp://r.example", "scheme `ftp`"),
            ("HTTPS://r.example", "scheme `HTTPS`"),
            ("r.example", "no scheme"),
            ("https://", "no host"),
            ("https://:5000", "no host"),
            ("https://r_x.example", "invalid host"),
            ("https://-r.example", "invalid host"),
            ("https://r-.example", "invalid host"),
            ("https://r..example", "invalid host"),
            ("https://r.example.", "invalid host"),
            ("https://r%2eexample", "invalid host"),
            ("https://999.1.1.1", "invalid IPv4"),
            ("https://1.2.3", "invalid IPv4"),
            ("https://[::1", "unclosed"),
            ("https://[zz::1]", "invalid IPv6"),
            ("https://[::1]x", "after its IPv6"),
            ("https://[::1]:70000", "invalid port"),
        ] {
            let e = check(url).expect_err(url);
            assert!(e.message.contains(says), "{url}: {}", e.message);
        }
        assert_eq!(
            check("https://ci:hunter2@r.example")
                .unwrap_err()
                .secret
                .as_deref(),
            Some("ci:hunter2")
        );
        let long = format!("https://{}.example", "a".repeat(64));
        assert!(check(&long).unwrap_err().message.contains("invalid host"));
        let very_long = format!("https://{}example", "abcdefghi.".repeat(26));
        assert!(
            check(&very_long)
                .unwrap_err()
                .message
                .contains("longer than 253")
        );
    }
}
