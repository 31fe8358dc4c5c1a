use std::time::{Duration, Instant};
use bilayer_plugins::rhai_runtime::{RhaiConfig, RhaiPlugin};
#[test]
fn probe() {
    let text = "fn run(n) { let a = []; a.pad(n, 1); let b = a; a.reduce(|s, v| s + b.reduce(|t, w| t + w, 0), 0) }\nrun";
    let p = RhaiPlugin::from_source_with_config("t", text, RhaiConfig::default().max_operations(10_000).timeout(Duration::from_millis(30))).unwrap();
    for n in ["100", "1000", "3000"] {
        let t = Instant::now();
        let r = p.execute_sync(n);
        println!("n={n} {:?} in {:?}", r, t.elapsed());
    }
}
