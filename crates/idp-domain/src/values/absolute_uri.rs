//! The grammar of an absolute URI (RFC 3986 section 4.3), checked as sent.
//!
//! A WHATWG URL parser is the wrong judge here: it rewrites what it forgives
//! (spaces, backslashes, `https:///x`) and refuses what RFC 3986 allows (a
//! user name before an empty host, `foo://user@`). RFC 8707 asks for an
//! absolute URI by RFC 3986, so that is the grammar checked.

/// The parts of an absolute URI that callers decide on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AbsoluteUri<'a> {
    /// As sent (case kept; schemes compare case-insensitively).
    pub scheme: &'a str,
    /// The host, when the URI has an authority (`//`); it may be empty.
    pub host: Option<&'a str>,
}

/// Why a string is not an absolute URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// It has a `#` fragment, which an absolute URI never has.
    Fragment,
    /// Anything else the grammar does not allow.
    Syntax,
}

/// `absolute-URI = scheme ":" hier-part [ "?" query ]`.
pub(crate) fn parse(raw: &str) -> Result<AbsoluteUri<'_>, Refusal> {
    if raw.contains('#') {
        return Err(Refusal::Fragment);
    }
    let (scheme, rest) = raw.split_once(':').ok_or(Refusal::Syntax)?;
    if !is_scheme(scheme) {
        return Err(Refusal::Syntax);
    }
    let (hier_part, query) = match rest.split_once('?') {
        Some((hier_part, query)) => (hier_part, Some(query)),
        None => (rest, None),
    };
    if let Some(query) = query
        && !all_of(query, |c| is_pchar(c) || matches!(c, b'/' | b'?'))
    {
        return Err(Refusal::Syntax);
    }
    let host = match hier_part.strip_prefix("//") {
        // "//" authority path-abempty
        Some(after) => {
            let (authority, path) = after.split_at(after.find('/').unwrap_or(after.len()));
            if !is_path(path) {
                return Err(Refusal::Syntax);
            }
            Some(host_of(authority)?)
        }
        // path-absolute / path-rootless / path-empty: segments of pchars,
        // and "//" was taken above, so an absolute path's first segment is
        // not empty.
        None => {
            if !is_path(hier_part) {
                return Err(Refusal::Syntax);
            }
            None
        }
    };
    Ok(AbsoluteUri { scheme, host })
}

/// `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme(scheme: &str) -> bool {
    let mut bytes = scheme.bytes();
    bytes.next().is_some_and(|c| c.is_ascii_alphabetic())
        && bytes.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

/// `authority = [ userinfo "@" ] host [ ":" port ]`; returns the host.
fn host_of(authority: &str) -> Result<&str, Refusal> {
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => (Some(userinfo), host_port),
        None => (None, authority),
    };
    if let Some(userinfo) = userinfo
        && !all_of(userinfo, |c| {
            is_unreserved(c) || is_sub_delim(c) || c == b':'
        })
    {
        return Err(Refusal::Syntax);
    }
    let (host, port) = match host_port.find(']') {
        Some(end) if host_port.starts_with('[') => {
            let (literal, after) = host_port.split_at(end + 1);
            if !is_ip_literal(literal) {
                return Err(Refusal::Syntax);
            }
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or(Refusal::Syntax)?),
            };
            (literal, port)
        }
        _ => {
            let (host, port) = match host_port.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (host_port, None),
            };
            // A reg-name (which an IPv4 address also matches) may be empty;
            // a `[` without its `]` is refused here.
            if !all_of(host, |c| is_unreserved(c) || is_sub_delim(c)) {
                return Err(Refusal::Syntax);
            }
            (host, port)
        }
    };
    if let Some(port) = port
        && !port.bytes().all(|c| c.is_ascii_digit())
    {
        return Err(Refusal::Syntax);
    }
    Ok(host)
}

/// `IP-literal = "[" ( IPv6address / IPvFuture ) "]"`.
fn is_ip_literal(literal: &str) -> bool {
    let Some(inner) = literal
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    else {
        return false;
    };
    if let Some(future) = inner.strip_prefix(['v', 'V']) {
        // IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
        let Some((version, address)) = future.split_once('.') else {
            return false;
        };
        return !version.is_empty()
            && version.bytes().all(|c| c.is_ascii_hexdigit())
            && !address.is_empty()
            && address
                .bytes()
                .all(|c| is_unreserved(c) || is_sub_delim(c) || c == b':');
    }
    inner.parse::<std::net::Ipv6Addr>().is_ok()
}

/// `path-abempty`, `path-absolute`, `path-rootless` or `path-empty`: segments
/// of pchars separated by `/`.
fn is_path(path: &str) -> bool {
    all_of(path, |c| is_pchar(c) || c == b'/')
}

/// Whether every character of `s` passes `allowed`, a percent sign being
/// allowed only as the start of `pct-encoded` (`"%" HEXDIG HEXDIG`).
fn all_of(s: &str, allowed: impl Fn(u8) -> bool) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        if c == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
        } else if allowed(c) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// `pchar = unreserved / pct-encoded / sub-delims / ":" / "@"` (the percent
/// sign is handled by [`all_of`]).
fn is_pchar(c: u8) -> bool {
    is_unreserved(c) || is_sub_delim(c) || matches!(c, b':' | b'@')
}

/// `unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"`.
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

/// `sub-delims = "!" / "$" / "&" / "'" / "(" / ")" / "*" / "+" / "," / ";" / "="`.
fn is_sub_delim(c: u8) -> bool {
    matches!(
        c,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_rfc_3986_allows_is_an_absolute_uri() {
        for (raw, scheme, host) in [
            ("https://api.example/mcp", "https", Some("api.example")),
            ("http://localhost:8931/mcp", "http", Some("localhost")),
            (
                "https://api.example/p?q=1&r=/x?",
                "https",
                Some("api.example"),
            ),
            ("https://u:p@api.example:443", "https", Some("api.example")),
            ("https://[::1]:8443/x", "https", Some("[::1]")),
            ("foo://[v7.a:b]/", "foo", Some("[v7.a:b]")),
            ("urn:example:inventory", "urn", None),
            ("N:", "N", None),
            ("M:C", "M", None),
            ("vH:zP9)", "vH", None),
            ("LJhlWL3yZZh1X:/__(", "LJhlWL3yZZh1X", None),
            ("QizTtyo6G:,G", "QizTtyo6G", None),
            // A user name before an empty host: a WHATWG parser refuses it
            // (the API fuzzer's case), RFC 3986 does not.
            ("ie+ij://Ui=pCk@", "ie+ij", Some("")),
            ("file:///etc/hosts", "file", Some("")),
            ("a:%41%7e", "a", None),
            ("a://[::ffff:1.2.3.4]/", "a", Some("[::ffff:1.2.3.4]")),
            ("a://[1:2:3:4:5:6:7::]", "a", Some("[1:2:3:4:5:6:7::]")),
            ("a://[::1:2:3:4:5:6:7]", "a", Some("[::1:2:3:4:5:6:7]")),
            ("a://[::]", "a", Some("[::]")),
        ] {
            assert_eq!(parse(raw), Ok(AbsoluteUri { scheme, host }), "{raw:?}");
        }
    }

    #[test]
    fn what_it_does_not_is_refused() {
        for raw in [
            "",
            "/relative",
            "api.example",
            ":no-scheme",
            "1a:digit-first",
            "a_b:underscore-in-scheme",
            "a:b c",
            "a:b\\c",
            "a:b\"c",
            "a:b[c",
            "a:%zz",
            "a:%4",
            "a:é",
            "https://api.example/ space",
            "https://h:80x/",
            "https://[::1/",
            "https://[zz]/",
            "https://[::1]x/",
            "https://[v.x]/",
            "https://h^/",
            "https://u[@h/",
            "a:b?c d",
            "a://[1.2.3.4]",
            "a://[::01.2.3.4]",
        ] {
            assert_eq!(parse(raw), Err(Refusal::Syntax), "{raw:?}");
        }
        assert_eq!(parse("https://a/#f"), Err(Refusal::Fragment));
        assert_eq!(parse("urn:a#"), Err(Refusal::Fragment));
    }
}
