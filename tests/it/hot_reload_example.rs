//! Runs examples/hot_reload.rs (the seed's "Hot Reload Configuration" event loop with a
//! `PluginManager`) to completion: the loop must end on its own once the example stops the
//! manager, after a reload, a failed reload, a migrated reload and a no-op save.

#[path = "../../examples/hot_reload.rs"]
mod example;

/// The example's `main` builds its own tokio runtime (`#[tokio::main]`), so it is called from a
/// plain test thread, not from inside a runtime.
#[test]
fn the_example_runs_to_completion() {
    let outcome = example::main();
    assert!(outcome.is_ok(), "example main failed: {:?}", outcome.err());
}
