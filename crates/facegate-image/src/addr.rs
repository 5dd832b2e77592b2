//! Classification of IP addresses for SSRF protection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What kind of destination an IP address is, for the URL fetcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// Globally routable unicast: always fetchable.
    Public,
    /// Loopback, private, CGNAT, link-local, unique-local, documentation,
    /// benchmarking and other special-purpose unicast ranges: fetchable only
    /// when the operator allows private addresses.
    Restricted,
    /// Unspecified, multicast, broadcast and reserved addresses: never a
    /// valid place to fetch an image from, whatever the policy.
    Unroutable,
}

/// Classifies `ip`. IPv6 forms that embed an IPv4 address (mapped,
/// compatible, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by the
/// embedded address, so `::ffff:127.0.0.1` is as restricted as `127.0.0.1`.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// Whether `ip` may be connected to under the given policy.
pub fn is_allowed(ip: IpAddr, allow_private: bool) -> bool {
    match classify(ip) {
        AddressClass::Public => true,
        AddressClass::Restricted => allow_private,
        AddressClass::Unroutable => false,
    }
}

fn in_v4(ip: u32, net: [u8; 4], prefix: u32) -> bool {
    let net = u32::from_be_bytes(net);
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    ip & mask == net & mask
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let n = u32::from(ip);
    // 0/8 ("this network"), multicast 224/4 and reserved 240/4 (which holds
    // the limited broadcast address) are never unicast destinations.
    if in_v4(n, [0, 0, 0, 0], 8) || in_v4(n, [224, 0, 0, 0], 4) || in_v4(n, [240, 0, 0, 0], 4) {
        return AddressClass::Unroutable;
    }
    const RESTRICTED: [([u8; 4], u32); 12] = [
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // CGNAT shared address space
        ([127, 0, 0, 0], 8),     // loopback
        ([169, 254, 0, 0], 16),  // link-local (cloud metadata lives here)
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments
        ([192, 0, 2, 0], 24),    // TEST-NET-1
        ([192, 88, 99, 0], 24),  // 6to4 relay anycast (deprecated)
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // TEST-NET-2
        ([203, 0, 113, 0], 24),  // TEST-NET-3
    ];
    if RESTRICTED.iter().any(|&(net, p)| in_v4(n, net, p)) {
        AddressClass::Restricted
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let seg = ip.segments();
    let bits = u128::from(ip);
    if ip.is_unspecified() || seg[0] & 0xff00 == 0xff00 {
        return AddressClass::Unroutable; // :: and ff00::/8 multicast
    }
    if ip.is_loopback() {
        return AddressClass::Restricted;
    }
    let low_v4 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    // ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible, deprecated),
    // ::ffff:0:a.b.c.d (SIIT translated) and 64:ff9b::/96 (NAT64) all
    // reach the embedded IPv4 host.
    let top96 = bits >> 32;
    if top96 == 0xffff || top96 == 0 || top96 == 0xffff_0000 || top96 == 0x0064_ff9b << 64 {
        return classify_v4(low_v4);
    }
    // 6to4 2002:V4ADDR::/48 tunnels to the embedded IPv4 host.
    if seg[0] == 0x2002 {
        let v4 = Ipv4Addr::from(((u32::from(seg[1])) << 16) | u32::from(seg[2]));
        return match classify_v4(v4) {
            AddressClass::Public => AddressClass::Public,
            _ => AddressClass::Restricted,
        };
    }
    // Only 2000::/3 is global unicast; everything else (fc00::/7 unique
    // local, fe80::/10 link-local, fec0::/10 site-local, 100::/64 discard,
    // 64:ff9b:1::/48 local NAT64, ...) is special-purpose.
    if seg[0] & 0xe000 != 0x2000 {
        return AddressClass::Restricted;
    }
    let in_v6 = |net: u128, prefix: u32| (bits ^ net) >> (128 - prefix) == 0;
    let special = in_v6(0x2001_0000 << 96, 23) // IETF assignments incl. Teredo, ORCHID, benchmarking
        || in_v6(0x2001_0db8 << 96, 32) // documentation
        || in_v6(0x3fff_0000 << 96, 20); // documentation (RFC 9637)
    if special {
        AddressClass::Restricted
    } else {
        AddressClass::Public
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> AddressClass {
        classify(s.parse().unwrap())
    }

    #[test]
    fn ipv4() {
        use AddressClass::*;
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.15.255.255",
            "172.32.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "192.169.0.1",
            "11.0.0.1",
            "223.255.255.255",
        ] {
            assert_eq!(c(public), Public, "{public}");
        }
        for restricted in [
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "198.19.255.255",
            "192.0.0.8",
            "192.88.99.1",
        ] {
            assert_eq!(c(restricted), Restricted, "{restricted}");
        }
        for unroutable in [
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
        ] {
            assert_eq!(c(unroutable), Unroutable, "{unroutable}");
        }
    }

    #[test]
    fn ipv6() {
        use AddressClass::*;
        for public in [
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "2001:4860:4860::8888",
        ] {
            assert_eq!(c(public), Public, "{public}");
        }
        for restricted in [
            "::1",
            "fe80::1",
            "febf::1",
            "fc00::1",
            "fd12:3456::1",
            "fec0::1",
            "2001:db8::1",
            "2001::1",
            "2001:2::1",
            "3fff::1",
            "100::1",
            "64:ff9b:1::1",
        ] {
            assert_eq!(c(restricted), Restricted, "{restricted}");
        }
        for unroutable in ["::", "ff02::1", "ff05::1:3"] {
            assert_eq!(c(unroutable), Unroutable, "{unroutable}");
        }
    }

    #[test]
    fn ipv4_embedded_in_ipv6() {
        use AddressClass::*;
        // Mapped.
        assert_eq!(c("::ffff:127.0.0.1"), Restricted);
        assert_eq!(c("::ffff:7f00:1"), Restricted);
        assert_eq!(c("::ffff:10.1.2.3"), Restricted);
        assert_eq!(c("::ffff:169.254.169.254"), Restricted);
        assert_eq!(c("::ffff:0.0.0.0"), Unroutable);
        assert_eq!(c("::ffff:224.0.0.1"), Unroutable);
        assert_eq!(c("::ffff:8.8.8.8"), Public);
        // Compatible (deprecated).
        assert_eq!(c("::127.0.0.1"), Restricted);
        assert_eq!(c("::192.168.0.1"), Restricted);
        assert_eq!(c("::8.8.8.8"), Public);
        // SIIT translated.
        assert_eq!(c("::ffff:0:127.0.0.1"), Restricted);
        // NAT64 well-known prefix.
        assert_eq!(c("64:ff9b::127.0.0.1"), Restricted);
        assert_eq!(c("64:ff9b::10.0.0.1"), Restricted);
        assert_eq!(c("64:ff9b::8.8.8.8"), Public);
        // 6to4.
        assert_eq!(c("2002:7f00:0001::1"), Restricted);
        assert_eq!(c("2002:c0a8:0101::1"), Restricted);
        assert_eq!(c("2002:0808:0808::1"), Public);
    }

    #[test]
    fn policy() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let mc: IpAddr = "224.0.0.1".parse().unwrap();
        let pb: IpAddr = "8.8.8.8".parse().unwrap();
        assert!(!is_allowed(lo, false));
        assert!(is_allowed(lo, true));
        assert!(!is_allowed(mc, true));
        assert!(is_allowed(pb, false));
    }
}
