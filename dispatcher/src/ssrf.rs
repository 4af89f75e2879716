//! The SSRF guard: endpoints may not reach loopback, private, link-local,
//! metadata or otherwise special addresses. Names are resolved here and the
//! connection goes to an address that passed the check (no second lookup a
//! rebinding DNS server could answer differently).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

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
            if v6.is_loopback() {
                Some("loopback address")
            } else if v6.is_unspecified() {
                Some("unspecified address")
            } else if seg[0] & 0xfe00 == 0xfc00 {
                Some("unique local (private) address")
            } else if seg[0] & 0xffc0 == 0xfe80 {
                Some("link-local address")
            } else if seg[0] & 0xff00 == 0xff00 {
                Some("multicast address")
            } else if seg[0] == 0x64 && seg[1] == 0xff9b {
                // NAT64 embeds an IPv4 address in the last 32 bits.
                let v4 = Ipv4Addr::new(
                    (seg[6] >> 8) as u8,
                    seg[6] as u8,
                    (seg[7] >> 8) as u8,
                    seg[7] as u8,
                );
                forbidden_v4(v4).map(|_| "NAT64 address of a forbidden IPv4 address")
            } else if seg[0] == 0x2001 && seg[1] == 0xdb8 {
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

/// Refusal of a whole host: every address it resolved to is forbidden.
#[derive(Debug, thiserror::Error)]
#[error("target {host} refused by the SSRF guard: {reason} ({addr}); run webhookd with --allow-private-targets to allow it")]
pub struct Refused {
    pub host: String,
    pub addr: IpAddr,
    pub reason: &'static str,
}

/// The addresses `host` resolved to that may be connected to; an error
/// naming the first refusal when none may.
pub fn allowed(host: &str, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Refused> {
    let mut first_refusal = None;
    let allowed: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| match forbidden(a.ip()) {
            None => true,
            Some(reason) => {
                first_refusal.get_or_insert(Refused {
                    host: host.to_string(),
                    addr: a.ip(),
                    reason,
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
    fn resolved_addresses_are_filtered() {
        let sa = |s: &str| SocketAddr::new(ip(s), 443);
        let mixed = vec![sa("10.0.0.1"), sa("93.184.216.34")];
        assert_eq!(allowed("h", mixed).unwrap(), vec![sa("93.184.216.34")]);
        let e = allowed("h", vec![sa("127.0.0.1"), sa("::1")]).unwrap_err();
        assert_eq!((e.addr, e.reason), (ip("127.0.0.1"), "loopback address"));
    }
}
