//! The written form of a proxy URL: which texts [`crate::net::Proxy::parse`] accepts
//! before the `url` crate reads the scheme and credentials. This module is the one
//! place that decides it, and the `pattern` of `proxy` in `docs/openapi.json` states
//! the same rule (`tests/api_contract.rs` checks the two agree on a table of cases).
//!
//! Written by hand because the `url` crate, rightly for a browser, takes much that a
//! proxy setting should refuse: IPv4 shorthand and octal or hex forms (`127.1`,
//! `0x7f.1`, `010.0.0.1`), host names with `*` or `!`, ports with leading zeros or
//! none after the `:`, a path, a query, an empty user name whose password it drops.
//! Each of those is a typo or a trick, and each is refused here with its reason.
//!
//! The rule: `SCHEME://[USER[:PASSWORD]@]HOST[:PORT][/]` where SCHEME is `http`,
//! `https`, `socks5` or `socks5h` in any case, HOST is a DNS name
//! (dot-separated labels of 1-63 letters, digits, `-` and `_`, the last label
//! starting with a letter; DNS's 253-byte bound on a whole name is left to the
//! resolver, as a pattern cannot state it), four decimal numbers 0-255 without leading
//! zeros, or an IPv6 address in brackets (hex groups, no zone, no embedded IPv4); PORT
//! is 0-65535 without leading zeros; USER and PASSWORD are unreserved or sub-delimiter
//! characters and percent escapes (the decoded bytes must be UTF-8, checked later).

use std::net::{Ipv4Addr, Ipv6Addr};

/// Checks the authority and the rest of `url` after its `scheme://`; the reason in
/// words when it is refused.
pub(crate) fn check(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("no `://` after the scheme".into());
    };
    if !["http", "https", "socks5", "socks5h"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(scheme))
    {
        return Err(format!(
            "scheme `{scheme}` is not supported; use http, https, socks5 or socks5h"
        ));
    }
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(authority_len);
    if !(after.is_empty() || after == "/") {
        return Err(
            "it has a path, query or fragment; a proxy is a scheme, a host and a port".into(),
        );
    }
    let host_port = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => {
            check_userinfo(userinfo)?;
            host_port
        }
        None => authority,
    };
    let port =
        if let Some(bracketed) = host_port.strip_prefix('[') {
            let Some((ip, after)) = bracketed.split_once(']') else {
                return Err("an IPv6 address without its closing `]`".into());
            };
            let hex_only = !ip.is_empty() && ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
            if !hex_only || ip.parse::<Ipv6Addr>().is_err() {
                return Err(format!(
                "`[{ip}]` is not an IPv6 address (hex groups and `::`, no zone or embedded IPv4)"
            ));
            }
            match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(|| {
                    format!("`{after}` after the IPv6 address; expected `:PORT`")
                })?),
            }
        } else {
            let (host, port) = match host_port.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (host_port, None),
            };
            check_host(host)?;
            port
        };
    if let Some(port) = port {
        check_port(port)?;
    }
    Ok(())
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("no host".into());
    }
    let dotted_digits = host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    // std's parser takes exactly four decimal numbers 0-255 without leading zeros.
    if dotted_digits && host.parse::<Ipv4Addr>().is_ok() {
        return Ok(());
    }
    if dotted_digits {
        return Err(format!(
            "`{host}` is not an IPv4 address: write four decimal numbers 0-255, without leading zeros"
        ));
    }
    if is_dns_name(host) {
        return Ok(());
    }
    Err(format!(
        "`{host}` is not a host name (letters, digits, `-` and `_` in dot-separated labels, the last starting with a letter) nor an IP address"
    ))
}

/// Whether `name` can name a host in DNS (see the module documentation); `_` is
/// allowed because container and service names use it.
fn is_dns_name(name: &str) -> bool {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    name.split('.').all(label_ok)
        && name
            .rsplit('.')
            .next()
            .and_then(|l| l.bytes().next())
            .is_some_and(|b| b.is_ascii_alphabetic())
}

fn check_port(port: &str) -> Result<(), String> {
    let digits = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    let leading_zero = port.len() > 1 && port.starts_with('0');
    match port.parse::<u16>() {
        Ok(_) if digits && !leading_zero => Ok(()),
        _ => Err(format!(
            "port `{port}` is not a number from 0 to 65535 (without leading zeros)"
        )),
    }
}

fn check_userinfo(userinfo: &str) -> Result<(), String> {
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (userinfo, None),
    };
    if user.is_empty() {
        return Err("an `@` with no user name before it".into());
    }
    for part in std::iter::once(user).chain(password) {
        if !is_userinfo_text(part) {
            return Err(
                "the credentials have a character that must be percent-encoded (only letters, digits, `-._~!$&'()*+,;=` and `%XX` escapes)"
                    .into(),
            );
        }
    }
    Ok(())
}

/// Unreserved and sub-delimiter characters and `%XX` escapes (RFC 3986 `userinfo`
/// without `:`).
fn is_userinfo_text(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let escape = bytes.get(i + 1..i + 3);
            if !escape.is_some_and(|e| e.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
        } else if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_names_its_reason() {
        for (url, reason) in [
            ("http://h/p", "has a path"),
            ("http://127.1", "four decimal numbers"),
            ("http://h*", "not a host name"),
            ("http://h:080", "without leading zeros"),
            ("http://:pw@h", "no user name"),
            ("http://u:p w@h", "percent-encoded"),
            ("http://[::ffff:1.2.3.4]", "no zone or embedded IPv4"),
            ("http://[::1", "closing `]`"),
            ("http://[::1]x", "expected `:PORT`"),
            ("proxy.example:3128", "no `://`"),
            ("http:s://h", "scheme `http:s`"),
            ("ftp://h", "scheme `ftp`"),
        ] {
            let why = check(url).unwrap_err();
            assert!(why.contains(reason), "{url}: {why}");
        }
        assert_eq!(check("socks5h://user:p%40ss@[2001:db8::1]:1080/"), Ok(()));
    }
}
