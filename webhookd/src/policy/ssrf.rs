//! The SSRF guard: endpoints may not reach loopback, private, link-local,
//! metadata or otherwise special addresses. Names are resolved here and the
//! connection goes to an address that passed the check (no second lookup a
//! rebinding DNS server could answer differently).
//!
//! The operator may widen or narrow it (`Policy`): `--deny-cidr` refuses
//! its ranges whatever else is set, `--allow-cidr` permits its ranges
//! though the guard would refuse them (receivers on a private network),
//! and `--allow-private-targets` turns the guard off (development).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ipnet::IpNet;

/// Why an address is refused, or None when it is a public unicast address.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            // A public service never needs an IPv4-mapped address, and
            // allowing some would invite parser tricks: refuse them all.
            if v6.to_ipv4_mapped().is_some() {
                return Some("IPv4-mapped address");
            }
            let seg = v6.segments();
            // The IPv4 address in the last 32 bits (NAT64).
            let low_v4 = || {
                Ipv4Addr::new(
                    (seg[6] >> 8) as u8,
                    seg[6] as u8,
                    (seg[7] >> 8) as u8,
                    seg[7] as u8,
                )
            };
            if v6.is_loopback() {
                Some("loopback address")
            } else if v6.is_unspecified() {
                Some("unspecified address")
            } else if seg[0..4] == [0, 0, 0, 0] && seg[4] == 0xffff && seg[5] == 0 {
                // ::ffff:0:0:0/96, SIIT's IPv4-translated addresses.
                Some("IPv4-translated address")
            } else if seg[0] & 0xfe00 == 0xfc00 {
                Some("unique local (private) address")
            } else if seg[0] & 0xffc0 == 0xfe80 {
                Some("link-local address")
            } else if seg[0] & 0xffc0 == 0xfec0 {
                Some("site-local (private) address")
            } else if seg[0] & 0xff00 == 0xff00 {
                Some("multicast address")
            } else if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1 {
                // 64:ff9b:1::/48: NAT64 inside a private network.
                Some("local-use NAT64 address")
            } else if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
                // 64:ff9b::/96, the well-known NAT64 prefix.
                forbidden_v4(low_v4()).map(|_| "NAT64 address of a forbidden IPv4 address")
            } else if seg[0] == 0x64 && seg[1] == 0xff9b {
                Some("reserved NAT64 address")
            } else if seg[0] == 0x2002 {
                // 6to4 embeds an IPv4 address in bits 16..48.
                let v4 = Ipv4Addr::new(
                    (seg[1] >> 8) as u8,
                    seg[1] as u8,
                    (seg[2] >> 8) as u8,
                    seg[2] as u8,
                );
                forbidden_v4(v4).map(|_| "6to4 address of a forbidden IPv4 address")
            } else if seg[0] == 0x2001 && seg[1] == 0 {
                // Teredo: tunnelled to an IPv4 address no check here sees.
                Some("Teredo address")
            } else if seg[0] == 0x2001 && seg[1] == 2 && seg[2] == 0 {
                Some("benchmarking address")
            } else if seg[0] == 0x2001 && (seg[1] & 0xfff0 == 0x10 || seg[1] & 0xfff0 == 0x20) {
                Some("ORCHID address")
            } else if seg[0] == 0x100 && seg[1..4] == [0, 0, 0] {
                Some("discard-only address")
            } else if (seg[0] == 0x2001 && seg[1] == 0xdb8) || seg[0] & 0xfff0 == 0x3ff0 {
                Some("documentation address")
            } else if seg[0..6] == [0, 0, 0, 0, 0, 0] {
                Some("IPv4-compatible address")
            } else {
                None
            }
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("loopback address")
    } else if ip.is_private() {
        Some("private address")
    } else if ip.is_link_local() {
        Some("link-local or cloud metadata address")
    } else if o[0] == 0 {
        Some("\"this network\" address")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("carrier-grade NAT address")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("IETF protocol assignment")
    } else if o[0] == 192 && o[1] == 88 && o[2] == 99 {
        Some("6to4 relay anycast address")
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        Some("benchmarking address")
    } else if ip.is_multicast() || o[0] >= 240 {
        Some("multicast or reserved address")
    } else if ip.is_documentation() {
        Some("documentation address")
    } else {
        None
    }
}

/// A CIDR for `--allow-cidr` / `--deny-cidr`; a bare address is a range of
/// one.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not a CIDR (such as 10.1.0.0/16 or fd00::/8) or an address"))
}

/// Which addresses webhookd may connect to.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// The guard off: special addresses allowed (development and tests).
    pub allow_private_targets: bool,
    /// Ranges allowed though the guard would refuse them.
    pub allow: Vec<IpNet>,
    /// Ranges refused whatever else is set.
    pub deny: Vec<IpNet>,
}

/// The rule that refused an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    Deny(IpNet),
    Guard(&'static str),
}

impl Policy {
    /// Whether `ip` may be connected to: deny first, then allow, then the
    /// guard (unless turned off). IPv4-mapped addresses are matched as the
    /// IPv4 address they carry, so a denied IPv4 range is not reachable
    /// through its mapped form either.
    pub fn check(&self, ip: IpAddr) -> Result<(), Rule> {
        let canonical = ip.to_canonical();
        if let Some(net) = self.deny.iter().find(|n| n.contains(&canonical)) {
            return Err(Rule::Deny(*net));
        }
        if self.allow_private_targets || self.allow.iter().any(|n| n.contains(&canonical)) {
            return Ok(());
        }
        forbidden(ip).map_or(Ok(()), |reason| Err(Rule::Guard(reason)))
    }

    /// The policy of the connection to a proxy: the proxy is the
    /// operator's choice (often on a private network or loopback), so the
    /// guard and the allow list do not apply to it, but `--deny-cidr` still
    /// wins. Only the proxy hop may use it, never an endpoint's address.
    pub fn for_proxy(&self) -> Policy {
        Policy {
            allow_private_targets: true,
            allow: Vec::new(),
            deny: self.deny.clone(),
        }
    }

    /// The addresses `host` resolved to that may be connected to; an error
    /// naming the first refusal when none may.
    pub fn allowed(&self, host: &str, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Refused> {
        let mut first_refusal = None;
        let allowed: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| match self.check(a.ip()) {
                Ok(()) => true,
                Err(rule) => {
                    first_refusal.get_or_insert(Refused {
                        host: host.to_string(),
                        addr: a.ip(),
                        rule,
                    });
                    false
                }
            })
            .collect();
        match first_refusal {
            Some(r) if allowed.is_empty() => Err(r),
            _ => Ok(allowed),
        }
    }
}

/// Refusal of a whole host: every address it resolved to is refused.
#[derive(Debug, thiserror::Error)]
pub struct Refused {
    pub host: String,
    pub addr: IpAddr,
    pub rule: Rule,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Refused { host, addr, rule } = self;
        match rule {
            Rule::Deny(net) => write!(f, "target {host} refused: {addr} is in --deny-cidr {net}"),
            Rule::Guard(reason) => write!(
                f,
                "target {host} refused by the SSRF guard: {reason} ({addr}); allow its range with --allow-cidr (or every range with --allow-private-targets)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_special_addresses() {
        for a in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:93.184.216.34",
            "64:ff9b::a00:1",
            "::127.0.0.1",
        ] {
            assert!(forbidden(ip(a)).is_some(), "{a} should be refused");
        }
    }

    #[test]
    fn allows_public_addresses() {
        for a in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert_eq!(forbidden(ip(a)), None, "{a} should be allowed");
        }
    }

    #[test]
    fn refuses_tunnel_translation_and_site_local_ranges() {
        for (a, why) in [
            ("2002:7f00:1::1", "6to4 address of a forbidden IPv4 address"),
            (
                "2002:a9fe:a9fe::",
                "6to4 address of a forbidden IPv4 address",
            ),
            ("::ffff:0:127.0.0.1", "IPv4-translated address"),
            ("::ffff:0:93.184.216.34", "IPv4-translated address"),
            ("fec0::1", "site-local (private) address"),
            ("feff::1", "site-local (private) address"),
            ("64:ff9b:1::a00:1", "local-use NAT64 address"),
            ("64:ff9b:1:ffff::1", "local-use NAT64 address"),
            ("2001::1", "Teredo address"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo address"),
            ("192.88.99.1", "6to4 relay anycast address"),
            ("2001:2::1", "benchmarking address"),
            ("2001:20::1", "ORCHID address"),
            ("100::1", "discard-only address"),
            ("3fff::1", "documentation address"),
        ] {
            assert_eq!(forbidden(ip(a)), Some(why), "{a}");
        }
        // The public IPv4 address inside a 6to4 address is allowed.
        assert_eq!(forbidden(ip("2002:5db8:d822::1")), None);
        assert_eq!(forbidden(ip("64:ff9b::5db8:d822")), None);
        assert_eq!(forbidden(ip("2001:4860:4860::8888")), None);
    }

    fn policy(private: bool, allow: &[&str], deny: &[&str]) -> Policy {
        Policy {
            allow_private_targets: private,
            allow: allow.iter().map(|s| parse_cidr(s).unwrap()).collect(),
            deny: deny.iter().map(|s| parse_cidr(s).unwrap()).collect(),
        }
    }

    #[test]
    fn deny_wins_then_allow_then_the_guard() {
        let net = |s: &str| parse_cidr(s).unwrap();
        let p = policy(false, &["10.1.0.0/16", "127.0.0.0/8"], &["10.1.2.0/24"]);
        assert_eq!(p.check(ip("10.1.3.4")), Ok(()));
        assert_eq!(p.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(p.check(ip("10.1.2.3")), Err(Rule::Deny(net("10.1.2.0/24"))));
        assert_eq!(p.check(ip("10.2.0.1")), Err(Rule::Guard("private address")));
        assert_eq!(p.check(ip("93.184.216.34")), Ok(()));
        // Deny wins over --allow-private-targets, and over a mapped form.
        let p = policy(true, &[], &["127.0.0.1/32", "93.184.216.0/24"]);
        assert_eq!(p.check(ip("127.0.0.2")), Ok(()));
        assert_eq!(
            p.check(ip("127.0.0.1")),
            Err(Rule::Deny(net("127.0.0.1/32")))
        );
        assert_eq!(
            p.check(ip("::ffff:127.0.0.1")),
            Err(Rule::Deny(net("127.0.0.1/32")))
        );
        assert_eq!(
            p.check(ip("93.184.216.34")),
            Err(Rule::Deny(net("93.184.216.0/24")))
        );
        // An allowed IPv4 range does not open its mapped form to the guard
        // beyond the range itself.
        let p = policy(false, &["10.0.0.0/8"], &[]);
        assert_eq!(p.check(ip("::ffff:10.0.0.1")), Ok(()));
        assert!(p.check(ip("::ffff:127.0.0.1")).is_err());
    }

    #[test]
    fn cidrs_parse_with_or_without_a_length() {
        assert_eq!(parse_cidr(" 10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_cidr("10.1.2.3").unwrap().to_string(), "10.1.2.3/32");
        assert_eq!(parse_cidr("fd00::/8").unwrap().to_string(), "fd00::/8");
        assert_eq!(parse_cidr("::1").unwrap().to_string(), "::1/128");
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("example.com").is_err());
    }

    #[test]
    fn resolved_addresses_are_filtered_and_refusals_name_their_rule() {
        let sa = |s: &str| SocketAddr::new(ip(s), 443);
        let guard = Policy::default();
        let mixed = vec![sa("10.0.0.1"), sa("93.184.216.34")];
        assert_eq!(
            guard.allowed("h", mixed).unwrap(),
            vec![sa("93.184.216.34")]
        );
        let e = guard
            .allowed("h", vec![sa("127.0.0.1"), sa("::1")])
            .unwrap_err();
        assert_eq!(
            (e.addr, e.rule.clone()),
            (ip("127.0.0.1"), Rule::Guard("loopback address"))
        );
        assert!(
            e.to_string()
                .contains("SSRF guard: loopback address (127.0.0.1)"),
            "{e}"
        );
        let e = policy(true, &[], &["127.0.0.0/8"])
            .allowed("h", vec![sa("127.0.0.1")])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "target h refused: 127.0.0.1 is in --deny-cidr 127.0.0.0/8"
        );
    }

    #[test]
    fn the_proxy_hop_skips_the_guard_but_never_the_deny_list() {
        let p = policy(false, &["10.0.0.0/8"], &["127.0.0.8/29"]).for_proxy();
        assert_eq!(p.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(p.check(ip("192.168.1.1")), Ok(()));
        assert!(matches!(p.check(ip("127.0.0.9")), Err(Rule::Deny(_))));
        assert!(matches!(
            p.check(ip("::ffff:127.0.0.9")),
            Err(Rule::Deny(_))
        ));
    }
}
