//! Which addresses a client may connect to: the destination policy `mummer serve`
//! puts on every session it drives, so an API caller or a proxy client cannot make a
//! session reach the server's own machine or network (its API port, a database on
//! loopback, a cloud metadata address, the office LAN).
//!
//! The decision is made on the address actually dialled, after DNS resolution and
//! `--resolve`/`--connect-to`, for every connection: the first request's, each
//! redirect's, each retry's, and an upstream proxy's. So a name that resolves to
//! 127.0.0.1 (DNS rebinding), a redirect to `http://169.254.169.254/`, or a proxy URL
//! pointing at the API are all refused the same way. What a proxy reaches on the far
//! side of its tunnel is the proxy's business (with `socks5h://` and HTTP proxies the
//! proxy resolves the name; with `socks5://` the address is checked here).
//!
//! The library's own default is no policy (everything allowed): a scraper on a laptop
//! may fetch its own test site. This module is pure: [`DestinationPolicy::check`] gets
//! a host name and an address and says yes or why not.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

/// The addresses a policy refuses unless allowed: see [`DestinationPolicy::check`].
#[derive(Debug, Default)]
pub struct DestinationPolicy {
    allow_private: bool,
    allowed_nets: Vec<IpNet>,
    allowed_hosts: Vec<String>,
    /// Added once the server has bound its ports (after sessions may exist), so behind
    /// a lock; read once per connection, never per request.
    own_listeners: std::sync::RwLock<Vec<SocketAddr>>,
}

impl DestinationPolicy {
    /// A policy that refuses loopback, private, link-local, shared (CGNAT), unspecified,
    /// multicast and broadcast addresses: what `mummer serve` uses by default.
    pub fn public_only() -> Self {
        DestinationPolicy::default()
    }

    /// Allows private, loopback and link-local addresses too (`--allow-private`); the
    /// server's own listening addresses stay refused.
    #[must_use]
    pub fn allow_private(mut self, allow: bool) -> Self {
        self.allow_private = allow;
        self
    }

    /// Allows one entry of an operator's allow-list (`--allow-destination`): a CIDR
    /// (`10.1.0.0/16`, `::1/128`), an address, a host name (`intranet.example`) or
    /// every name under a domain (`.corp.example`). Host entries match the name in the
    /// URL (or the proxy's), whatever it resolves to.
    ///
    /// # Errors
    ///
    /// The entry is neither a network, an address nor a host name.
    pub fn allow(mut self, entry: &str) -> Result<Self, String> {
        let entry = entry.trim();
        if let Ok(net) = entry.parse::<IpNet>() {
            self.allowed_nets.push(net);
        } else if let Ok(ip) = entry.parse::<IpAddr>() {
            self.allowed_nets.push(IpNet::from(ip));
        } else {
            let name = entry.to_ascii_lowercase();
            let bare = name.strip_prefix('.').unwrap_or(&name);
            let valid = !bare.is_empty()
                && bare.len() <= 253
                && bare.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                });
            if !valid {
                return Err(format!(
                    "`{entry}` is not a network (10.0.0.0/8), an address or a host name"
                ));
            }
            self.allowed_hosts.push(name);
        }
        Ok(self)
    }

    /// Refuses this listening address of the server itself, whatever else is allowed;
    /// an unspecified address (`0.0.0.0:7878`) stands for every local address on its
    /// port. Takes `&self` so a server can add the ports it bound after sessions
    /// holding the policy were made.
    pub fn refuse_own(&self, listener: SocketAddr) {
        if let Ok(mut own) = self.own_listeners.write() {
            own.push(listener);
        }
    }

    /// Whether a connection for `host` (the name being reached, as in the URL or the
    /// proxy URL) may go to `addr`.
    ///
    /// # Errors
    ///
    /// Why not, naming the address and the flag that would allow it.
    pub fn check(&self, host: &str, addr: SocketAddr) -> Result<(), String> {
        let ip = canonical(addr.ip());
        if self.is_own_listener(ip, addr.port()) {
            return Err(format!(
                "{addr} is this server's own listening address: sessions driven through the API may not reach it"
            ));
        }
        if self.allowed_nets.iter().any(|n| n.contains(&ip)) || self.host_allowed(host) {
            return Ok(());
        }
        match classify(ip) {
            Class::Public => Ok(()),
            Class::Private(_) if self.allow_private => Ok(()),
            Class::Private(what) | Class::Never(what) => Err(format!(
                "{addr} ({host}) is a {what} address, refused by the server's destination policy (the operator can allow it with --allow-private or --allow-destination)"
            )),
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allowed_hosts
            .iter()
            .any(|entry| match entry.strip_prefix('.') {
                Some(domain) => host == domain || host.ends_with(entry.as_str()),
                None => host == *entry,
            })
    }

    fn is_own_listener(&self, ip: IpAddr, port: u16) -> bool {
        let Ok(own) = self.own_listeners.read() else {
            return true;
        };
        own.iter().any(|own| {
            own.port() == port
                && (canonical(own.ip()) == ip
                    || (own.ip().is_unspecified() && !matches!(classify(ip), Class::Public)))
        })
    }
}

/// What kind of address `ip` is.
enum Class {
    /// Reachable on the internet.
    Public,
    /// Loopback, private, link-local or shared: refused unless private ones are allowed.
    Private(&'static str),
    /// Unspecified, multicast, broadcast: never a host to connect to.
    Never(&'static str),
}

/// An IPv4 address carried in IPv6 (mapped `::ffff:a.b.c.d`) as itself, so it cannot
/// slip past the IPv4 rules.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn classify(ip: IpAddr) -> Class {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Class {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Class::Never("unspecified (0.0.0.0/8)")
    } else if ip.is_broadcast() {
        Class::Never("broadcast")
    } else if ip.is_multicast() || a >= 240 {
        Class::Never("multicast or reserved")
    } else if ip.is_loopback() {
        Class::Private("loopback")
    } else if ip.is_private() {
        Class::Private("private (RFC 1918)")
    } else if ip.is_link_local() {
        Class::Private("link-local (169.254.0.0/16, cloud metadata)")
    } else if a == 100 && (64..128).contains(&b) {
        Class::Private("shared (100.64.0.0/10, carrier-grade NAT)")
    } else if a == 192 && b == 0 && ip.octets()[2] == 0 {
        Class::Private("IETF protocol assignment (192.0.0.0/24)")
    } else if a == 198 && (b == 18 || b == 19) {
        Class::Private("benchmarking (198.18.0.0/15)")
    } else {
        Class::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> Class {
    let first = ip.segments()[0];
    if ip.is_unspecified() {
        Class::Never("unspecified (::)")
    } else if ip.is_multicast() {
        Class::Never("multicast")
    } else if ip.is_loopback() {
        Class::Private("loopback")
    } else if first & 0xfe00 == 0xfc00 {
        Class::Private("unique local (fc00::/7)")
    } else if first & 0xffc0 == 0xfe80 {
        Class::Private("link-local (fe80::/10)")
    } else if first & 0xffc0 == 0xfec0 {
        Class::Private("site-local (fec0::/10)")
    } else if ip.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64: judge the IPv4 address inside.
        let [.., c, d] = ip.segments();
        let v4 = Ipv4Addr::from((u32::from(c) << 16) | u32::from(d));
        classify_v4(v4)
    } else {
        Class::Public
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(addr: &str) -> SocketAddr {
        addr.parse().unwrap()
    }

    #[test]
    fn by_default_only_public_addresses_pass() {
        let p = DestinationPolicy::public_only();
        for ok in [
            "93.184.216.34:443",
            "[2606:2800:220:1::1]:443",
            "1.1.1.1:80",
        ] {
            assert!(p.check("site.example", at(ok)).is_ok(), "{ok}");
        }
        for refused in [
            "127.0.0.1:7878",
            "127.8.9.1:80",
            "10.1.2.3:80",
            "172.16.0.1:80",
            "172.31.255.255:80",
            "192.168.1.1:80",
            "169.254.169.254:80",
            "100.64.0.1:80",
            "0.0.0.0:80",
            "0.1.2.3:80",
            "255.255.255.255:80",
            "224.0.0.1:80",
            "[::1]:80",
            "[::]:80",
            "[fd00::1]:80",
            "[fe80::1]:80",
            "[::ffff:127.0.0.1]:80",
            "[::ffff:10.0.0.1]:80",
            "[64:ff9b::a9fe:a9fe]:80",
        ] {
            let err = p.check("site.example", at(refused)).unwrap_err();
            assert!(err.contains("destination policy"), "{refused}: {err}");
        }
        assert!(p.check("x", at("172.32.0.1:80")).is_ok());
        assert!(p.check("x", at("100.128.0.1:80")).is_ok());
    }

    #[test]
    fn allow_private_and_allow_lists_open_what_they_name() {
        let p = DestinationPolicy::public_only().allow_private(true);
        assert!(p.check("x", at("127.0.0.1:80")).is_ok());
        assert!(p.check("x", at("[fd00::1]:80")).is_ok());
        assert!(p.check("x", at("0.0.0.0:80")).is_err(), "never a host");
        let p = DestinationPolicy::public_only()
            .allow("10.1.0.0/16")
            .unwrap()
            .allow("::1")
            .unwrap()
            .allow(".corp.example")
            .unwrap()
            .allow("wiki.test")
            .unwrap();
        assert!(p.check("x", at("10.1.9.9:80")).is_ok());
        assert!(p.check("x", at("10.2.0.1:80")).is_err());
        assert!(p.check("x", at("[::1]:80")).is_ok());
        assert!(p.check("a.corp.example", at("10.9.9.9:80")).is_ok());
        assert!(p.check("corp.example", at("10.9.9.9:80")).is_ok());
        assert!(p.check("evilcorp.example", at("10.9.9.9:80")).is_err());
        assert!(p.check("WIKI.test.", at("127.0.0.1:80")).is_ok());
        assert!(p.check("wiki.test.evil", at("127.0.0.1:80")).is_err());
        for bad in ["", "a b", "10.0.0.0/99", "..", "x/y"] {
            assert!(DestinationPolicy::default().allow(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_servers_own_listeners_stay_refused_whatever_is_allowed() {
        let p = DestinationPolicy::public_only()
            .allow_private(true)
            .allow("127.0.0.0/8")
            .unwrap();
        p.refuse_own(at("127.0.0.1:7878"));
        p.refuse_own(at("0.0.0.0:8080"));
        assert!(p
            .check("x", at("127.0.0.1:7878"))
            .unwrap_err()
            .contains("own"));
        assert!(p.check("x", at("[::ffff:127.0.0.1]:7878")).is_err());
        assert!(p.check("x", at("127.0.0.1:7879")).is_ok());
        assert!(p.check("x", at("192.168.1.5:8080")).is_err());
        assert!(p.check("x", at("127.0.0.2:8080")).is_err());
        assert!(p.check("x", at("93.184.216.34:8080")).is_ok());
    }
}
