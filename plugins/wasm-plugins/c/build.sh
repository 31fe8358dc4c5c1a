#!/usr/bin/env sh
# Builds the C plugins into OUT_DIR (default: ./build): one .wasm per .c file.
# Needs clang and wasm-ld (Debian: apt-get install clang lld). The test
# plugins/tests/wasm_c_plugins.rs compiles them the same way at test time.
set -eu
cd "$(dirname "$0")"
out="${1:-build}"
mkdir -p "$out"
for src in *.c; do
  clang --target=wasm32-unknown-unknown -O2 -ffreestanding -nostdlib -mbulk-memory \
    -Wall -Wextra -Werror -Wl,--no-entry -o "$out/${src%.c}.wasm" "$src"
  echo "built $out/${src%.c}.wasm"
done
