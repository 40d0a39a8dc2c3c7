//! Who is the client: the socket peer, or what trusted proxies say it is.
//!
//! `X-Forwarded-For` is read only when the peer is a trusted proxy, right to left, skipping trusted
//! hops: the first untrusted address is the client. With no trusted proxies (the default) a spoofed
//! header never changes anything.

use std::net::{IpAddr, Ipv6Addr};

use actix_web::{HttpRequest, http::header::HeaderMap};
use ipnet::IpNet;

use crate::setting;

setting::component! {
    /// Who the client is.
    pub struct ClientIpConfig {
        /// comma-separated CIDRs or addresses whose `X-Forwarded-For` is believed
        #[serde(deserialize_with = "setting::comma_list")]
        trusted_proxies: Vec<String> = Vec::new(),
    }
}

impl ClientIpConfig {
    /// The trusted proxies' networks.
    pub fn resolve(&self) -> Result<Vec<IpNet>, setting::Error> {
        setting::each("trusted_proxies", &self.trusted_proxies, setting::cidr)
    }
}

#[derive(Debug, Clone, Default)]
pub struct ClientIdentity {
    trusted_proxies: Vec<IpNet>,
}

/// The unit a client is limited by: an IPv4 address, or an IPv6 /64, since one host can rotate
/// through a whole /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpBucket {
    V4([u8; 4]),
    V6Prefix64([u8; 8]),
}

impl ClientIdentity {
    pub fn new(trusted_proxies: Vec<IpNet>) -> Self {
        Self { trusted_proxies }
    }

    pub fn client_ip(&self, request: &HttpRequest) -> Option<IpAddr> {
        let peer = request.peer_addr()?.ip();
        Some(self.resolve(peer, request.headers()))
    }

    /// The client address given the socket peer and the request headers.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer);
        if !self.is_trusted(client) {
            return client;
        }
        // Several X-Forwarded-For headers form one list, in order.
        let hops: Vec<&str> =
            headers.get_all("x-forwarded-for").filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).collect();
        for hop in hops.iter().rev() {
            match parse_hop(hop) {
                Some(ip) => client = ip,
                // An unparsable hop ends what we can believe; the last trusted hop saw the client.
                None => break,
            }
            if !self.is_trusted(client) {
                break;
            }
        }
        client
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}

impl IpBucket {
    pub fn of(ip: IpAddr) -> Self {
        match canonical(ip) {
            IpAddr::V4(v4) => IpBucket::V4(v4.octets()),
            IpAddr::V6(v6) => {
                let mut prefix = [0u8; 8];
                prefix.copy_from_slice(&v6.octets()[..8]);
                IpBucket::V6Prefix64(prefix)
            }
        }
    }

    /// The bucket's first address: the IPv4 address, or the IPv6 /64's network address.
    pub fn address(&self) -> IpAddr {
        match self {
            IpBucket::V4(o) => IpAddr::from(*o),
            IpBucket::V6Prefix64(p) => {
                let mut octets = [0u8; 16];
                octets[..8].copy_from_slice(p);
                IpAddr::from(octets)
            }
        }
    }
}

impl std::fmt::Display for IpBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IpBucket::V4(o) => write!(f, "{}", std::net::Ipv4Addr::from(*o)),
            IpBucket::V6Prefix64(p) => {
                let mut octets = [0u8; 16];
                octets[..8].copy_from_slice(p);
                write!(f, "{}/64", Ipv6Addr::from(octets))
            }
        }
    }
}

/// IPv4-mapped IPv6 addresses (dual-stack sockets) are the IPv4 client they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One X-Forwarded-For entry: an address, possibly with a port (`1.2.3.4:80`, `[::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok().map(canonical);
    }
    let (host, _port) = hop.rsplit_once(':')?;
    host.parse().ok().map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in xff {
            map.append(HeaderName::from_static("x-forwarded-for"), HeaderValue::from_str(v).unwrap());
        }
        map
    }

    fn identity(trusted: &[&str]) -> ClientIdentity {
        ClientIdentity::new(trusted.iter().map(|c| setting::parse_cidr(c).unwrap()).collect())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_header_is_ignored() {
        let id = identity(&[]);
        assert_eq!(id.resolve(ip("203.0.113.9"), &headers(&["1.2.3.4"])), ip("203.0.113.9"));
    }

    #[test]
    fn trusted_peer_header_read_right_to_left_skipping_trusted_hops() {
        let id = identity(&["10.0.0.0/8"]);
        // client spoofs 6.6.6.6, real client 198.51.100.7, then an internal proxy 10.1.1.1
        let h = headers(&["6.6.6.6, 198.51.100.7", "10.1.1.1"]);
        assert_eq!(id.resolve(ip("10.0.0.2"), &h), ip("198.51.100.7"));
    }

    #[test]
    fn all_hops_trusted_means_the_leftmost() {
        let id = identity(&["10.0.0.0/8"]);
        assert_eq!(id.resolve(ip("10.0.0.2"), &headers(&["10.9.9.9, 10.1.1.1"])), ip("10.9.9.9"));
    }

    #[test]
    fn garbage_hop_stops_the_walk() {
        let id = identity(&["10.0.0.0/8"]);
        assert_eq!(id.resolve(ip("10.0.0.2"), &headers(&["1.2.3.4, nonsense"])), ip("10.0.0.2"));
    }

    #[test]
    fn hops_with_ports_and_brackets() {
        let id = identity(&["127.0.0.1"]);
        assert_eq!(id.resolve(ip("127.0.0.1"), &headers(&["198.51.100.7:5555"])), ip("198.51.100.7"));
        assert_eq!(id.resolve(ip("127.0.0.1"), &headers(&["[2001:db8::1]:443"])), ip("2001:db8::1"));
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        assert_eq!(IpBucket::of(ip("2001:db8:1:2:aaaa::1")), IpBucket::of(ip("2001:db8:1:2:bbbb::9")));
        assert_ne!(IpBucket::of(ip("2001:db8:1:2::1")), IpBucket::of(ip("2001:db8:1:3::1")));
        assert_eq!(IpBucket::of(ip("2001:db8:1:2::1")).to_string(), "2001:db8:1:2::/64");
        assert_eq!(IpBucket::of(ip("::ffff:192.0.2.1")), IpBucket::of(ip("192.0.2.1")));
    }
}
