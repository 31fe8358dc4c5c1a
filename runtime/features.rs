//! The Cargo features of this build (see the crate docs, "Cargo features"), and the one way a
//! definition or a subcommand says that it needs one the build lacks: which feature, and the
//! command that builds it in. A lighter build is a choice; meeting its limit should never look
//! like a bug (a missing subcommand, an unknown key).

/// The error text for `needed_by` (what the user asked for: "agent `intake` is a Rhai script",
/// "`bilayer worker`") in a build without `feature`.
pub fn missing(feature: &str, needed_by: &str) -> String {
    format!(
        "{needed_by}: this bilayer was built without the `{feature}` feature; rebuild with \
         `cargo build --features {feature}` (the default features include it)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_feature_and_how_to_get_it() {
        assert_eq!(
            missing("wasm", "`bilayer exec` of a WASM module"),
            "`bilayer exec` of a WASM module: this bilayer was built without the `wasm` \
             feature; rebuild with `cargo build --features wasm` (the default features include it)"
        );
    }
}
