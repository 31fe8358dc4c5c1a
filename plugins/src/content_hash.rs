//! The one digest bilayer names contents by: a script's or module's version, a watched file's
//! content (to skip saves that change nothing), a system definition in a durable run's batch.
//!
//! FNV-1a, 64 bits: stable across runs, platforms and Rust releases (std's `DefaultHasher` is
//! not), cheap, and only ever compared with itself: never a security boundary.

/// The FNV-1a 64-bit digest of `bytes`.
///
/// ```
/// assert_eq!(bilayer_plugins::content_hash(b""), 0xcbf2_9ce4_8422_2325);
/// assert_ne!(bilayer_plugins::content_hash(b"a"), bilayer_plugins::content_hash(b"b"));
/// ```
pub fn content_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
