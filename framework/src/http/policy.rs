//! What a process lets its integrations' HTTP clients do, whatever their settings say: how large
//! a response body may be, and (opt-in, for multi-tenant deployments) which addresses a base URL
//! may reach. The guard checks the *resolved* address of every connection, so a hostname that
//! resolves to a private address is refused too.
//!
//! From the environment ([`HttpPolicy::from_env`]):
//! `TRIBUTARY_HTTP_MAX_BODY_BYTES` (default 64 MiB), `TRIBUTARY_HTTP_BLOCK_PRIVATE_ADDRESSES=1`
//! (refuse loopback, link-local, private, shared and unspecified addresses), and
//! `TRIBUTARY_HTTP_ALLOWED_ADDRESSES` (comma-separated addresses or CIDR ranges let through all
//! the same, e.g. an internal GitHub Enterprise).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The environment variables of the policy.
pub const MAX_BODY_ENV: &str = "TRIBUTARY_HTTP_MAX_BODY_BYTES";
pub const BLOCK_PRIVATE_ENV: &str = "TRIBUTARY_HTTP_BLOCK_PRIVATE_ADDRESSES";
pub const ALLOWED_ENV: &str = "TRIBUTARY_HTTP_ALLOWED_ADDRESSES";

/// The default cap of a response body: generous for any JSON page, small beside a worker's
/// memory.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpPolicy {
    /// A body larger than this is refused (the stream ends in `error` saying so).
    pub max_body_bytes: usize,
    /// `Some`: connections only to public addresses (and the allowed ones).
    pub guard: Option<AddressGuard>,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            guard: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct PolicyError {
    pub variable: &'static str,
    pub message: String,
}

impl HttpPolicy {
    /// The policy the environment sets (the defaults without it).
    pub fn from_env() -> Result<Self, PolicyError> {
        let var = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let mut policy = Self::default();
        if let Some(max) = var(MAX_BODY_ENV) {
            policy.max_body_bytes = max.trim().parse().map_err(|_| PolicyError {
                variable: MAX_BODY_ENV,
                message: format!("`{max}` is not a number of bytes"),
            })?;
        }
        let block =
            var(BLOCK_PRIVATE_ENV).is_some_and(|v| matches!(v.trim(), "1" | "true" | "yes"));
        if block {
            let allowed = var(ALLOWED_ENV).unwrap_or_default();
            policy.guard =
                Some(
                    AddressGuard::allowing(&allowed).map_err(|message| PolicyError {
                        variable: ALLOWED_ENV,
                        message,
                    })?,
                );
        }
        Ok(policy)
    }
}

/// Refuses loopback, link-local, private, shared (100.64/10), unspecified, broadcast and
/// multicast addresses, except those allowed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddressGuard {
    allowed: Vec<(IpAddr, u8)>,
}

impl AddressGuard {
    /// A guard letting through the comma-separated addresses and CIDR ranges of `list`.
    pub fn allowing(list: &str) -> Result<Self, String> {
        let mut allowed = Vec::new();
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (addr, prefix) = match item.split_once('/') {
                Some((addr, prefix)) => (addr, Some(prefix)),
                None => (item, None),
            };
            let ip: IpAddr = addr
                .parse()
                .map_err(|_| format!("`{item}` is not an address or a CIDR range"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                Some(p) => p
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| format!("`{item}` has no valid prefix length"))?,
                None => max,
            };
            allowed.push((ip, prefix));
        }
        Ok(Self { allowed })
    }

    /// Why `ip` is refused, or `None` when it may be reached.
    pub fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if self
            .allowed
            .iter()
            .any(|(net, prefix)| in_range(ip, *net, *prefix))
        {
            return None;
        }
        match ip {
            IpAddr::V4(v4) => {
                let [a, b, ..] = v4.octets();
                if v4.is_loopback() {
                    Some("a loopback address")
                } else if v4.is_link_local() {
                    Some("a link-local address")
                } else if v4.is_private() {
                    Some("a private address")
                } else if a == 100 && (64..128).contains(&b) {
                    Some("a shared (carrier-grade NAT) address")
                } else if v4.is_unspecified() || a == 0 {
                    Some("an unspecified address")
                } else if v4.is_broadcast() || v4.is_multicast() {
                    Some("a broadcast or multicast address")
                } else {
                    None
                }
            }
            IpAddr::V6(v6) => {
                let first = v6.segments()[0];
                if v6.is_loopback() {
                    Some("a loopback address")
                } else if v6.is_unspecified() {
                    Some("an unspecified address")
                } else if first & 0xffc0 == 0xfe80 {
                    Some("a link-local address")
                } else if first & 0xfe00 == 0xfc00 {
                    Some("a private (unique local) address")
                } else if v6.is_multicast() {
                    Some("a multicast address")
                } else {
                    None
                }
            }
        }
    }
}

fn in_range(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// A connection the guard refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{host}` resolves to {ip}, {why}: refused (TRIBUTARY_HTTP_BLOCK_PRIVATE_ADDRESSES is on; \
     an operator may allow it in TRIBUTARY_HTTP_ALLOWED_ADDRESSES)"
)]
pub struct AddressRefused {
    pub host: String,
    pub ip: IpAddr,
    pub why: &'static str,
}

/// reqwest's resolver behind the guard: every resolved address is checked before a connection.
pub(super) struct GuardedResolver {
    pub guard: Arc<AddressGuard>,
}

impl fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedResolver").finish_non_exhaustive()
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut permitted = Vec::with_capacity(resolved.len());
            for addr in resolved {
                if let Some(why) = guard.refusal(addr.ip()) {
                    return Err(Box::new(AddressRefused {
                        host,
                        ip: addr.ip(),
                        why,
                    })
                        as Box<dyn std::error::Error + Send + Sync>);
                }
                permitted.push(addr);
            }
            Ok(Box::new(permitted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_addresses_are_refused_unless_allowed() {
        let guard = AddressGuard::allowing("").unwrap();
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(guard.refusal(ip(refused)).is_some(), "{refused}");
        }
        for public in ["140.82.112.3", "2606:4700::1111", "8.8.8.8"] {
            assert_eq!(guard.refusal(ip(public)), None, "{public}");
        }
        let allowing = AddressGuard::allowing("10.0.0.0/8, 127.0.0.1").unwrap();
        assert_eq!(allowing.refusal(ip("10.9.8.7")), None);
        assert_eq!(allowing.refusal(ip("127.0.0.1")), None);
        assert!(allowing.refusal(ip("127.0.0.2")).is_some());
        assert!(AddressGuard::allowing("10.0.0.0/33").is_err());
        assert!(AddressGuard::allowing("intranet").is_err());
    }
}
