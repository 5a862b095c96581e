#!/usr/bin/env bash
# `make build`: the stripped static musl release binary, within the size budget. Adds the rustup
# target when it is missing.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_cargo
if command -v rustup >/dev/null 2>&1; then
  if ! rustup target list --installed | grep -qx "$RUST_TARGET"; then
    run rustup target add "$RUST_TARGET" \
      || die "could not add the Rust target $RUST_TARGET: run 'rustup target add $RUST_TARGET' with network access, or install your toolchain's musl standard library"
  fi
else
  note "rustup not found: assuming your Rust toolchain has the $RUST_TARGET standard library (if the build says \"can't find crate for std\", install it)"
fi
read -ra cargo <<<"$CARGO"
run "${cargo[@]}" build --release --locked --target "$RUST_TARGET"
size=$(wc -c <"$BIN" | tr -d ' ')
within_budget "$BIN" "$size"
note "built $BIN: $size bytes (budget $SIZE_BUDGET)"
