//! What a function may reach: the hosts its YAML allows (`allowed_outbound_hosts`, written as
//! Spin does: `https://api.example.com`, `http://127.0.0.1:8080`, `https://*.example.com`), and
//! the addresses no function reaches unless the node's operator allows them (private, loopback,
//! link-local, CGNAT, cloud metadata...), checked after name resolution.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The most hosts one function may list.
pub const MAX_HOSTS: usize = 32;

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// The port a URL of this scheme means when it names none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// One allowed host: a scheme, a host (a name, `*.` and a name for its subdomains, `*` for any
/// host, or an IP address) and a port (the scheme's if none was written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    scheme: Scheme,
    host: String,
    port: u16,
}

impl HostPattern {
    /// Parses `scheme://host[:port]`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (scheme, rest) = match text.split_once("://") {
            Some(("http", rest)) => (Scheme::Http, rest),
            Some(("https", rest)) => (Scheme::Https, rest),
            _ => return Err(format!("`{text}` must start with http:// or https://")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) || rest.is_empty() {
            return Err(format!("`{text}` must be scheme://host[:port], without a path or a user"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            // An IPv6 address is written in brackets.
            Some((host, port)) if !host.ends_with(':') && !port.contains(']') => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("`{text}`: `{port}` is not a port"))?;
                (host, port)
            }
            _ => (rest, scheme.default_port()),
        };
        let host = host.to_ascii_lowercase();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = host.strip_prefix("*.").unwrap_or(&host);
        let valid = host == "*"
            || bare.parse::<IpAddr>().is_ok()
            || crate::tns::keys::is_fqdn(name)
            // A name of one label, such as `localhost`.
            || (crate::tns::keys::is_name(name) && !host.starts_with("*."));
        if !valid {
            return Err(format!("`{text}`: `{host}` is not a host name, `*.` and a name, or `*`"));
        }
        Ok(Self { scheme, host: bare.to_string(), port })
    }

    /// Whether a request to `scheme://host:port` is allowed by this pattern.
    pub fn allows(&self, scheme: Scheme, host: &str, port: u16) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let host = host.trim_end_matches('.');
        self.scheme == scheme
            && self.port == port
            && match self.host.strip_prefix("*.") {
                _ if self.host == "*" => true,
                Some(parent) => {
                    host.len() > parent.len() + 1 && host.ends_with(&format!(".{parent}"))
                }
                None => self.host == host,
            }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match self.host.parse::<Ipv6Addr>() {
            Ok(_) => format!("[{}]", self.host),
            Err(_) => self.host.clone(),
        };
        write!(f, "{}://{host}:{}", self.scheme.name(), self.port)
    }
}

/// A block of addresses: `10.0.0.0/8`, `127.0.0.1/32`, `fc00::/7`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `address/prefix` (a bare address is a block of one).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| format!("`{text}`: not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max),
            None => Some(max),
        }
        .ok_or_else(|| format!("`{text}`: the prefix length must be 0 to {max}"))?;
        Ok(Self { addr, prefix })
    }

    /// Whether `ip` is in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
            if prefix == 0 { 0 } else { bits >> (width - prefix) }
        }
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                masked(u32::from(a).into(), self.prefix, 32)
                    == masked(u32::from(b).into(), self.prefix, 32)
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                masked(u128::from(a), self.prefix, 128) == masked(u128::from(b), self.prefix, 128)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An IPv4 address mapped into IPv6 (`::ffff:a.b.c.d`) as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The blocks no function reaches unless the operator allows them: this host and its
/// networks, private and shared (CGNAT) ranges, link-local (where cloud metadata services
/// answer, 169.254.169.254), multicast, reserved and documentation ranges, and their IPv6
/// counterparts.
pub const FORBIDDEN: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "64:ff9b:1::/48",
    "100::/64",
    "2001:db8::/32",
    "fc00::/7",
    "fd00:ec2::254/128",
    "fe80::/10",
    "ff00::/8",
];

/// Whether a function may connect to `ip`: not in [`FORBIDDEN`], or in a block the operator
/// `allowed`.
pub fn reachable(ip: IpAddr, allowed: &[Cidr]) -> bool {
    let ip = canonical(ip);
    if allowed.iter().any(|c| c.contains(ip)) {
        return true;
    }
    !FORBIDDEN.iter().filter_map(|c| Cidr::parse(c).ok()).any(|c| c.contains(ip))
}

/// The loopback address of this host, for tests that allow it.
pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns_are_read_as_spin_writes_them() {
        let api = HostPattern::parse("https://api.example.com").unwrap();
        assert!(api.allows(Scheme::Https, "API.example.com", 443));
        assert!(!api.allows(Scheme::Http, "api.example.com", 443));
        assert!(!api.allows(Scheme::Https, "api.example.com", 8443));
        assert!(!api.allows(Scheme::Https, "evil.com", 443));
        let sub = HostPattern::parse("https://*.example.com:8443").unwrap();
        assert!(sub.allows(Scheme::Https, "a.b.example.com", 8443));
        assert!(!sub.allows(Scheme::Https, "example.com", 8443));
        assert!(!sub.allows(Scheme::Https, "badexample.com", 8443));
        let local = HostPattern::parse("http://127.0.0.1:8080").unwrap();
        assert!(local.allows(Scheme::Http, "127.0.0.1", 8080));
        assert_eq!(local.to_string(), "http://127.0.0.1:8080");
        let v6 = HostPattern::parse("http://[::1]:81").unwrap();
        assert!(v6.allows(Scheme::Http, "[::1]", 81));
        assert_eq!(v6.to_string(), "http://[::1]:81");
        assert!(HostPattern::parse("https://*").unwrap().allows(Scheme::Https, "x.org", 443));
        let local = HostPattern::parse("http://localhost:8000").unwrap();
        assert!(local.allows(Scheme::Http, "localhost", 8000));
        for bad in [
            "api.example.com",
            "ftp://x.org",
            "https://x.org/path",
            "https://user@x.org",
            "https://x.org:0",
            "https://x.org:99999",
            "https://bad host",
            "https://",
            "https://*.*.x.org",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn private_and_metadata_addresses_are_unreachable_unless_allowed() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "224.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!reachable(ip, &[]), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8"] {
            assert!(reachable(ip.parse().unwrap(), &[]), "{ip}");
        }
        let allowed = [Cidr::parse("127.0.0.1/32").unwrap()];
        assert!(reachable(LOOPBACK, &allowed));
        assert!(!reachable("127.0.0.2".parse().unwrap(), &allowed));
        assert!(!reachable("169.254.169.254".parse().unwrap(), &allowed));
        assert!(Cidr::parse("10.0.0.0/33").is_err() && Cidr::parse("ten").is_err());
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
    }
}
