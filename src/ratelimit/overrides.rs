//! Per-network limits (`RATE_LIMIT_OVERRIDES`): listed networks get their own requests per window
//! instead of the default, for a customer's NAT, an office, a partner's proxy.
//!
//! An override changes the limit, not the key: each client address in the network is still limited
//! on its own, with the network's number. Users behind one NAT share one address, so a higher
//! per-address limit is what they need; a bucket shared by a whole range would instead make its
//! clients compete for one quota.

use ipnet::IpNet;

use super::{LimitKey, window::WindowParams};
use crate::client_ip::IpBucket;

/// The listed networks, most specific first, so the first that contains a client is the longest
/// prefix match whatever order they were listed in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitOverrides {
    networks: Vec<(IpNet, u32)>,
}

/// One entry that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidOverride {
    pub entry: String,
    pub reason: String,
}

impl LimitOverrides {
    /// Entries `CIDR=limit` (a bare address is that host), e.g. `203.0.113.0/24=500`.
    pub fn parse(entries: &[String]) -> Result<Self, InvalidOverride> {
        let mut networks: Vec<(IpNet, u32)> = Vec::with_capacity(entries.len());
        for entry in entries {
            let invalid = |reason: &str| InvalidOverride { entry: entry.clone(), reason: reason.to_string() };
            let (net, limit) = entry
                .split_once('=')
                .ok_or_else(|| invalid("expected CIDR=max requests per window, e.g. 203.0.113.0/24=500"))?;
            let net = crate::setting::parse_cidr(net.trim())
                .ok_or_else(|| invalid("expected a CIDR such as 203.0.113.0/24 or an IP address before '='"))?
                .trunc();
            let limit = limit
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|limit| *limit >= 1)
                .ok_or_else(|| invalid("the limit after '=' must be a whole number of requests, at least 1"))?;
            // IPv6 clients are limited per /64 (client_ip::IpBucket): a narrower entry would give one
            // counter two limits.
            if matches!(net, IpNet::V6(_)) && net.prefix_len() > 64 {
                return Err(invalid("IPv6 clients are limited per /64: list a /64 or a wider prefix"));
            }
            if networks.iter().any(|(listed, _)| *listed == net) {
                return Err(invalid("this network is listed twice"));
            }
            networks.push((net, limit));
        }
        networks.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        Ok(Self { networks })
    }

    /// The limit of the most specific listed network holding the client's counter, if any.
    pub fn limit_for(&self, client: &IpBucket) -> Option<u32> {
        let address = client.address();
        self.networks.iter().find(|(net, _)| net.contains(&address)).map(|(_, limit)| *limit)
    }

    /// The window of an IP key: `default`, with the limit of the client's network if it is listed.
    pub fn window_for(&self, ip: &LimitKey, default: WindowParams) -> WindowParams {
        match self.limit_for(&ip.ip()) {
            Some(limit) => WindowParams { limit, ..default },
            None => default,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(list: &[&str]) -> Result<LimitOverrides, InvalidOverride> {
        LimitOverrides::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn limit(overrides: &LimitOverrides, ip: &str) -> Option<u32> {
        overrides.limit_for(&IpBucket::of(ip.parse().unwrap()))
    }

    #[test]
    fn a_listed_network_has_its_limit_and_others_none() {
        let overrides = parse(&["203.0.113.0/24=500", "198.51.100.7=1000"]).unwrap();
        assert_eq!(limit(&overrides, "203.0.113.1"), Some(500));
        assert_eq!(limit(&overrides, "203.0.113.255"), Some(500));
        assert_eq!(limit(&overrides, "198.51.100.7"), Some(1000), "a bare address is that host");
        assert_eq!(limit(&overrides, "198.51.100.8"), None);
        assert_eq!(limit(&overrides, "192.0.2.1"), None);
    }

    #[test]
    fn the_longest_prefix_wins_whatever_the_order() {
        for list in [
            ["10.0.0.0/8=50", "10.1.0.0/16=500", "10.1.2.3/32=5"],
            ["10.1.2.3/32=5", "10.1.0.0/16=500", "10.0.0.0/8=50"],
        ] {
            let overrides = parse(&list).unwrap();
            assert_eq!(limit(&overrides, "10.1.2.3"), Some(5));
            assert_eq!(limit(&overrides, "10.1.2.4"), Some(500));
            assert_eq!(limit(&overrides, "10.2.0.1"), Some(50));
        }
    }

    #[test]
    fn ipv6_networks_match_every_address_of_a_64_inside_them() {
        let narrower = parse(&["2001:db8::/32=300", "2001:db8:0:1::/64=30", "2001:db8:0:2::/96=1"]).unwrap_err();
        assert_eq!(narrower.entry, "2001:db8:0:2::/96=1");
        let overrides = parse(&["2001:db8::/32=300", "2001:db8:0:1::/64=30"]).unwrap();
        assert_eq!(limit(&overrides, "2001:db8:0:1::abcd"), Some(30));
        assert_eq!(limit(&overrides, "2001:db8:ffff::1"), Some(300));
        assert_eq!(limit(&overrides, "2001:db9::1"), None);
        // a dual-stack socket's IPv4-mapped address is the IPv4 client
        let overrides = parse(&["203.0.113.0/24=500"]).unwrap();
        assert_eq!(limit(&overrides, "::ffff:203.0.113.9"), Some(500));
    }

    #[test]
    fn unusable_entries_are_refused_with_the_reason() {
        for (entry, reason) in [
            ("203.0.113.0/24", "expected CIDR=max requests"),
            ("203.0.113.0/33=5", "expected a CIDR"),
            ("customer=5", "expected a CIDR"),
            ("203.0.113.0/24=0", "at least 1"),
            ("203.0.113.0/24=-5", "at least 1"),
            ("203.0.113.0/24=lots", "at least 1"),
            ("203.0.113.0/24=99999999999", "at least 1"),
            ("2001:db8::1=5", "per /64"),
        ] {
            let error = parse(&["192.0.2.0/24=10", entry]).unwrap_err();
            assert_eq!(error.entry, entry);
            assert!(error.reason.contains(reason), "{entry}: {}", error.reason);
        }
    }

    #[test]
    fn one_network_listed_twice_is_ambiguous() {
        let error = parse(&["203.0.113.0/24=500", "203.0.113.7/24=50"]).unwrap_err();
        assert_eq!(
            (error.entry.as_str(), error.reason.as_str()),
            ("203.0.113.7/24=50", "this network is listed twice")
        );
        assert!(parse(&[" 203.0.113.0/24 = 500 ", "203.0.113.0/25=50"]).is_ok(), "spaces; nested networks");
        assert_eq!(parse(&[]).unwrap(), LimitOverrides::default());
    }
}
