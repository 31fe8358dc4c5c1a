//! The compiled-pattern cache behind the `regex_match(text, pattern)` host function.
//!
//! Rule conditions call `regex_match` with the same literal patterns on every message;
//! compiling a regex costs tens of microseconds, matching a compiled one well under one. So
//! patterns are compiled once and shared by every script of the process. The Rust regex crate
//! matches in linear time (no catastrophic backtracking), and pattern size is capped, so a
//! hostile pattern cannot stall a worker. The cache is bounded: a script that generates
//! endless distinct patterns empties it instead of growing it without end.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

use regex::{Regex, RegexBuilder};

/// Distinct patterns kept before the cache is emptied and starts over.
const MAX_CACHED_PATTERNS: usize = 512;
/// Upper bound on the compiled size of one pattern.
const MAX_COMPILED_PATTERN_BYTES: usize = 1 << 20;

fn cache() -> &'static RwLock<HashMap<String, Regex>> {
    static CACHE: OnceLock<RwLock<HashMap<String, Regex>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// True when `pattern` matches somewhere in `text`; an error message when the pattern is
/// invalid or too large.
pub(crate) fn regex_match(text: &str, pattern: &str) -> Result<bool, String> {
    {
        let patterns = cache()
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Match under the read lock: cloning a `Regex` out would give it a fresh (cold)
        // matching cache on every call.
        if let Some(regex) = patterns.get(pattern) {
            return Ok(regex.is_match(text));
        }
    }
    let regex = RegexBuilder::new(pattern)
        .size_limit(MAX_COMPILED_PATTERN_BYTES)
        .build()
        .map_err(|e| format!("invalid regex pattern {pattern:?}: {e}"))?;
    let matched = regex.is_match(text);
    let mut patterns = cache()
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if patterns.len() >= MAX_CACHED_PATTERNS {
        patterns.clear();
    }
    patterns.insert(pattern.to_string(), regex);
    Ok(matched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_and_caches() {
        assert_eq!(regex_match("order ORD-123", r"ORD-\d+"), Ok(true));
        assert_eq!(regex_match("order ORD-x", r"ORD-\d+"), Ok(false));
        assert!(cache().read().unwrap().contains_key(r"ORD-\d+"));
    }

    #[test]
    fn invalid_pattern_is_an_error_naming_it() {
        let err = regex_match("x", "(unclosed").unwrap_err();
        assert!(err.contains("(unclosed"), "{err}");
    }
}
