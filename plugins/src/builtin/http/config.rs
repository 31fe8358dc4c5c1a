//! `HttpConfig`: where the HTTP plugin may go, and how much it may wait for and read.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings of an [`HttpPlugin`](super::HttpPlugin); every field is also a key of the plugin's
/// JSON config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpConfig {
    /// Hosts requests may go to: `example.com` (any port), `example.com:8443` (that port only),
    /// `*.example.com` (any subdomain, not the domain itself), or `*` (anywhere). Empty: deny all.
    pub allowed_hosts: Vec<String>,
    /// The whole exchange: connecting, sending, and reading the full response.
    pub timeout_ms: u64,
    /// A larger response body is refused (checked against `Content-Length`, then while reading).
    pub max_response_bytes: usize,
    /// Sent with every request unless the request sets them itself.
    pub default_headers: BTreeMap<String, String>,
    /// Redirects followed (each to an allowed host only).
    pub max_redirects: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            timeout_ms: 30_000,
            max_response_bytes: 1024 * 1024,
            default_headers: BTreeMap::new(),
            max_redirects: 5,
        }
    }
}

impl HttpConfig {
    /// [`timeout_ms`](Self::timeout_ms) as a `Duration`.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Whether `host` (without port) at `port` matches an entry of the allow-list.
    pub fn allows(&self, host: &str, port: Option<u16>) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allowed_hosts.iter().any(|entry| {
            let entry = entry.trim().to_ascii_lowercase();
            if entry == "*" {
                return true;
            }
            let (entry_host, entry_port) = split_port(&entry);
            if let Some(entry_port) = entry_port {
                if Some(entry_port) != port {
                    return false;
                }
            }
            match entry_host.strip_prefix("*.") {
                Some(domain) => host.ends_with(&format!(".{domain}")),
                None => host == entry_host.trim_start_matches('[').trim_end_matches(']'),
            }
        })
    }
}

/// `host:port` → (`host`, port); a bare host or an IPv6 literal without port → (`host`, None).
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some((host, port)) = entry.rsplit_once(':') {
        let bracketed_v6 = host.starts_with('[') && host.ends_with(']');
        if (bracketed_v6 || !host.contains(':')) && !port.is_empty() {
            if let Ok(port) = port.parse() {
                return (host, Some(port));
            }
        }
    }
    (entry, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_matches_hosts_ports_and_subdomains() {
        let config = HttpConfig {
            allowed_hosts: vec![
                "api.example.com".into(),
                "127.0.0.1:8080".into(),
                "*.svc.local".into(),
            ],
            ..HttpConfig::default()
        };
        assert!(config.allows("API.example.com", Some(443)));
        assert!(config.allows("127.0.0.1", Some(8080)));
        assert!(!config.allows("127.0.0.1", Some(8081)));
        assert!(config.allows("db.svc.local", Some(80)));
        assert!(!config.allows("svc.local", Some(80)));
        assert!(!config.allows("example.com", Some(443)));
        assert!(!HttpConfig::default().allows("example.com", Some(443)));
    }
}
