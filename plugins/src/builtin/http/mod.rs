//! Outbound HTTP as a plugin, limited to an allow-list of hosts.
//!
//! - [`HttpConfig`]: allowed hosts (none by default: every request is refused until a host is
//!   allowed), timeout, response size cap, default headers;
//! - [`HttpRequest`]: `{"method", "url", "headers", "body"}` or a bare URL (a GET);
//! - [`HttpPlugin`]: answers `{"status", "headers", "body"}`, the body parsed as JSON when the
//!   response says it is JSON, else text.
//!
//! The host check runs before any connection is opened, and again on every redirect, so a
//! redirect cannot lead the plugin to a host that is not allowed.

mod config;
mod plugin;
mod request;

pub use config::HttpConfig;
pub use plugin::HttpPlugin;
pub use request::HttpRequest;
