//! Which addresses an endpoint may reach (R23, SSRF): never loopback, private (RFC 1918, ULA),
//! link-local (and so the cloud metadata address 169.254.169.254), CGNAT (100.64/10, where the
//! tailnet's own nodes live), unspecified, multicast, broadcast, documentation or other
//! reserved ranges — unless the server runs with `--webhooks-allow-private`.
//!
//! Checked at create (the gateway, on the URL's host) and at every delivery: the host is
//! resolved, *every* address checked, and the connection made to a checked address (the HTTP
//! client is pinned to it), so a DNS answer that changes between the check and the connection
//! (rebinding) cannot redirect a delivery.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use authkeys_events::EndpointUrl;

/// Why a target is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// The host resolves to a forbidden address.
    #[error(
        "endpointUrl: {host} resolves to {addr}, a loopback, private, link-local or otherwise \
         reserved address (allowed only with --webhooks-allow-private)"
    )]
    Forbidden {
        /// The host.
        host: String,
        /// The address.
        addr: IpAddr,
    },
    /// The host does not resolve.
    #[error("endpointUrl: {host} does not resolve: {why}")]
    Unresolved {
        /// The host.
        host: String,
        /// Why.
        why: String,
    },
}

fn v4_forbidden(a: Ipv4Addr) -> bool {
    let [o1, o2, ..] = a.octets();
    a.is_loopback()
        || a.is_private()
        || a.is_link_local()
        || a.is_unspecified()
        || a.is_broadcast()
        || a.is_multicast()
        || a.is_documentation()
        || o1 == 0
        || (o1 == 100 && (64..128).contains(&o2)) // CGNAT, the tailnet's own range
        || (o1 == 192 && o2 == 0 && a.octets()[2] == 0) // IETF protocol assignments
        || (o1 == 198 && (18..20).contains(&o2)) // benchmarking
        || o1 >= 240 // reserved
}

fn v6_forbidden(a: Ipv6Addr) -> bool {
    if let Some(v4) = a.to_ipv4_mapped() {
        return v4_forbidden(v4);
    }
    let seg0 = a.segments()[0];
    a.is_loopback()
        || a.is_unspecified()
        || a.is_multicast()
        || (seg0 & 0xfe00) == 0xfc00 // unique local (fd7a:115c:a1e0::/48, the tailnet's, too)
        || (seg0 & 0xffc0) == 0xfe80 // link-local
        || (seg0 & 0xffc0) == 0xfec0 // site-local (deprecated)
        || seg0 == 0x2001 && a.segments()[1] == 0x0db8 // documentation
        || seg0 == 0x0064 && a.segments()[1] == 0xff9b // NAT64 (may reach private v4)
        || seg0 == 0x2002 // 6to4 (embeds any v4)
        || (a.segments()[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated)
}

/// Whether `addr` is one a webhook may never reach without `--webhooks-allow-private`.
pub fn is_forbidden(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => v4_forbidden(a),
        IpAddr::V6(a) => v6_forbidden(a),
    }
}

/// The addresses to connect to for `url`: its host resolved (an IP literal as is), every one
/// checked unless `allow_private`. `Err` if the host does not resolve or any address is
/// forbidden.
pub async fn resolve(
    url: &EndpointUrl,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, TargetError> {
    let host = url.host();
    let port = url.port();
    let addrs: Vec<SocketAddr> = if let Ok(ip) = host.parse::<IpAddr>() {
        vec![SocketAddr::new(ip, port)]
    } else {
        tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| TargetError::Unresolved {
                host: host.to_owned(),
                why: e.to_string(),
            })?
            .collect()
    };
    if addrs.is_empty() {
        return Err(TargetError::Unresolved {
            host: host.to_owned(),
            why: "no address".into(),
        });
    }
    if !allow_private && let Some(bad) = addrs.iter().find(|a| is_forbidden(a.ip())) {
        return Err(TargetError::Forbidden {
            host: host.to_owned(),
            addr: bad.ip(),
        });
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_link_local_cgnat_and_metadata_are_forbidden() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd7a:115c:a1e0::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
        ] {
            let ip: IpAddr = bad.parse().expect("an address");
            assert!(is_forbidden(ip), "{bad}");
        }
        for ok in ["8.8.8.8", "1.1.1.1", "100.128.0.1", "2606:4700::1111"] {
            let ip: IpAddr = ok.parse().expect("an address");
            assert!(!is_forbidden(ip), "{ok}");
        }
    }

    #[tokio::test]
    async fn literal_and_resolved_hosts_are_checked_unless_private_is_allowed() {
        let url = EndpointUrl::parse("http://127.0.0.1:9/x").expect("valid");
        assert!(matches!(
            resolve(&url, false).await,
            Err(TargetError::Forbidden { .. })
        ));
        assert_eq!(
            resolve(&url, true).await.expect("allowed"),
            vec!["127.0.0.1:9".parse::<SocketAddr>().expect("addr")]
        );
        let url = EndpointUrl::parse("http://localhost:9/x").expect("valid");
        assert!(matches!(
            resolve(&url, false).await,
            Err(TargetError::Forbidden { .. })
        ));
        let url = EndpointUrl::parse("http://[::1]:9/x").expect("valid");
        assert!(resolve(&url, false).await.is_err());
    }
}
