//! The thread that advances an engine's epoch, which is what makes per-call timeouts work.
//!
//! With epoch interruption on, compiled wasm checks the engine's epoch counter at function
//! entries and loop back-edges and traps once it passes the store's deadline. Nothing advances
//! the counter by itself: without this ticker, a deadline would never be reached and an
//! infinite loop would run forever. The thread holds only a weak reference, so it ends within
//! one tick of the last user of the engine (a module, a store, a `WasmEngine`) going away.

use std::time::Duration;

use wasmtime::EngineWeak;

/// Starts the ticker for `engine`, incrementing its epoch every `tick`.
pub(crate) fn start(engine: EngineWeak, tick: Duration) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("bilayer-wasm-epoch".to_string())
        .spawn(move || loop {
            std::thread::sleep(tick);
            match engine.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => break,
            }
        })
        .map(drop)
}
