//! The client's address (contract section 7): the peer, or, when the peer is a
//! trusted proxy (`IDP_TRUSTED_PROXIES`), the rightmost address of
//! `X-Forwarded-For` that is not one. The limiter and audit `ipAddress` both
//! use it.

use std::net::IpAddr;

use actix_web::HttpRequest;
use actix_web::http::header::HeaderName;
use ipnet::IpNet;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The address of the client that sent `req`.
///
/// Each trusted proxy appends the address it received the request from, so
/// `X-Forwarded-For` is read from the right: hops that are trusted proxies are
/// skipped, and the first that is not is the client. Anything left of it was
/// written by the client itself and is ignored. An entry that is not an
/// address ends the walk at the last address a trusted proxy vouched for; a
/// chain of nothing but trusted proxies gives the leftmost of them.
pub fn client_ip(req: &HttpRequest, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = req.peer_addr().map(|addr| canonical(addr.ip()))?;
    if !is_trusted(peer, trusted) {
        return Some(peer);
    }
    let hops: Vec<&str> = req
        .headers()
        .get_all(X_FORWARDED_FOR)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(address) = parse_hop(hop) else {
            break;
        };
        client = address;
        if !is_trusted(address, trusted) {
            break;
        }
    }
    Some(client)
}

fn is_trusted(address: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&address))
}

/// An IPv4-mapped IPv6 address is the IPv4 address it maps.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port
/// (`203.0.113.7:4711`, `[2001:db8::1]:4711`) as some proxies write it.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(address) = hop.parse::<IpAddr>() {
        return Some(canonical(address));
    }
    if let Ok(socket) = hop.parse::<std::net::SocketAddr>() {
        return Some(canonical(socket.ip()));
    }
    hop.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse::<IpAddr>().ok())
        .map(canonical)
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn ip(req: TestRequest, trusted: &[&str]) -> Option<String> {
        client_ip(&req.to_http_request(), &nets(trusted)).map(|a| a.to_string())
    }

    fn from(peer: &str) -> TestRequest {
        TestRequest::default().peer_addr(peer.parse().unwrap())
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let req = from("198.51.100.9:1234").insert_header(("x-forwarded-for", "203.0.113.7"));
        assert_eq!(ip(req, &[]).as_deref(), Some("198.51.100.9"));
        let req = from("198.51.100.9:1234").insert_header(("x-forwarded-for", "203.0.113.7"));
        assert_eq!(ip(req, &["10.0.0.0/8"]).as_deref(), Some("198.51.100.9"));
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        // The client forged the first entry; the proxy chain appended the rest.
        let req = from("10.0.0.2:1234")
            .insert_header(("x-forwarded-for", "1.2.3.4, 203.0.113.7, 10.0.0.1"));
        assert_eq!(ip(req, &["10.0.0.0/8"]).as_deref(), Some("203.0.113.7"));
        // Several headers are one list, in order.
        let req = from("10.0.0.2:1234")
            .append_header(("x-forwarded-for", "1.2.3.4"))
            .append_header(("x-forwarded-for", "203.0.113.8"));
        assert_eq!(ip(req, &["10.0.0.0/8"]).as_deref(), Some("203.0.113.8"));
        // Ports and brackets as some proxies write them.
        let req = from("10.0.0.2:1234").insert_header(("x-forwarded-for", "[2001:db8::7]:443"));
        assert_eq!(ip(req, &["10.0.0.0/8"]).as_deref(), Some("2001:db8::7"));
        let req = from("10.0.0.2:1234").insert_header(("x-forwarded-for", "203.0.113.9:80"));
        assert_eq!(ip(req, &["10.0.0.2/32"]).as_deref(), Some("203.0.113.9"));
    }

    #[test]
    fn garbage_or_an_all_trusted_chain_stops_at_what_a_proxy_vouched_for() {
        let req = from("10.0.0.2:1234").insert_header(("x-forwarded-for", "203.0.113.7, nonsense"));
        assert_eq!(ip(req, &["10.0.0.0/8"]).as_deref(), Some("10.0.0.2"));
        let req = from("10.0.0.2:1234").insert_header(("x-forwarded-for", "10.0.0.5, 10.0.0.1"));
        assert_eq!(ip(req, &["10.0.0.0/8"]).as_deref(), Some("10.0.0.5"));
        // A trusted peer without the header is itself the client.
        assert_eq!(
            ip(from("10.0.0.2:1234"), &["10.0.0.0/8"]).as_deref(),
            Some("10.0.0.2")
        );
    }

    #[test]
    fn ipv4_mapped_peers_are_ipv4() {
        let req = from("[::ffff:198.51.100.9]:1234");
        assert_eq!(
            ip(req, &["198.51.100.0/24"]).as_deref(),
            Some("198.51.100.9")
        );
    }
}
