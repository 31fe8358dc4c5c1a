//! How a limit error tells its reader which setting raises the limit.
//!
//! The sandboxes are configured from Rust (builders such as `RhaiConfig::max_operations`) and
//! from front ends that read limits from a file (a system definition's `[limits]
//! max_operations`). A limit error always names the limit itself
//! ([`PluginError::LimitExceeded`]'s `limit`, e.g. `max_operations`); the advice that follows
//! names the setting the way the plugin was configured: the Rust builder by default, or the
//! key a front end maps the limit to. So a TOML user is never told to call a Rust method, and
//! a Rust user never reads about a TOML key.
//!
//! [`PluginError::LimitExceeded`]: crate::PluginError::LimitExceeded

use std::collections::BTreeMap;
use std::sync::Arc;

/// Where the user sets each limit: the Rust builder (`RhaiConfig::max_operations`) by default,
/// or the key a front end maps the limit to (a system definition's `[limits] max_operations`),
/// so a limit error's advice names the setting the way the plugin was configured. Cheap to
/// clone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitSettings {
    /// Limit name → the words for its setting; `None`: the Rust builders.
    keys: Option<Arc<BTreeMap<String, String>>>,
}

impl LimitSettings {
    /// Limits named by their Rust builders (`RhaiConfig::max_operations`): the default.
    pub fn rust() -> Self {
        Self::default()
    }

    /// Limits named by the keys of a configuration file: `keys` maps a limit's name
    /// (`timeout`) to the words for the setting that raises it (`` `[limits] timeout_ms` ``). A
    /// limit without a key has no setting there, and its errors say only what to change in
    /// the plugin.
    pub fn keys<I, K, V>(keys: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            keys: Some(Arc::new(
                keys.into_iter()
                    .map(|(limit, key)| (limit.into(), key.into()))
                    .collect(),
            )),
        }
    }

    /// The setting that raises `limit`: `{rust_type}::{limit}` for Rust users, the mapped key
    /// for a configuration file, `None` when the file has no key for it.
    pub fn setting(&self, rust_type: &str, limit: &str) -> Option<String> {
        match &self.keys {
            None => Some(format!("{rust_type}::{limit}")),
            Some(keys) => keys.get(limit).cloned(),
        }
    }

    /// "raise SETTING, or {otherwise}", or just `otherwise` when nothing can be raised.
    pub fn advice(&self, rust_type: &str, limit: &str, otherwise: &str) -> String {
        match self.setting(rust_type, limit) {
            Some(setting) => format!("raise {setting}, or {otherwise}"),
            None => otherwise.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_users_read_the_builder_and_file_users_the_key() {
        let rust = LimitSettings::rust();
        assert_eq!(
            rust.advice("RhaiConfig", "max_operations", "make the script do less"),
            "raise RhaiConfig::max_operations, or make the script do less"
        );
        let file = LimitSettings::keys([("timeout", "`[limits] timeout_ms`")]);
        assert_eq!(
            file.advice("RhaiConfig", "timeout", "make the script do less"),
            "raise `[limits] timeout_ms`, or make the script do less"
        );
        assert_eq!(
            file.advice("RhaiConfig", "max_json_depth", "use less data"),
            "use less data"
        );
    }
}
