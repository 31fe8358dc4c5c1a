#!/usr/bin/env python3
"""Prints the median of every criterion benchmark under target/criterion as a markdown table.

Run after `cargo bench`; docs/benchmarks.md quotes its output.
"""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")


def human(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.1f} ns"


rows = []
for estimates in sorted(root.glob("**/new/estimates.json")):
    bench = estimates.parent.parent.relative_to(root).as_posix()
    median = json.loads(estimates.read_text())["median"]["point_estimate"]
    rows.append((bench, median))

print("| bench | median |")
print("|---|---:|")
for bench, median in rows:
    print(f"| {bench} | {human(median)} |")
