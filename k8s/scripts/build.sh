#!/usr/bin/env bash
# `make build`: the stripped static musl release binary for RUST_TARGET, within the size budget.
# Adds the rustup target when it is missing. `make image` runs it once for each platform.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_cargo
bin=$(bin_of "$RUST_TARGET")
if command -v rustup >/dev/null 2>&1; then
  if ! rustup target list --installed | grep -qx "$RUST_TARGET"; then
    run rustup target add "$RUST_TARGET" \
      || die "could not add the Rust target $RUST_TARGET: run 'rustup target add $RUST_TARGET' with network access, or install your toolchain's musl standard library"
  fi
else
  note "rustup not found: assuming your Rust toolchain has the $RUST_TARGET standard library (if the build says \"can't find crate for std\", install it)"
fi
read -ra cargo <<<"$CARGO"
build=("${cargo[@]}" build --release --locked --target "$RUST_TARGET")
# The musl targets bring their own C runtime, so rustup's rust-lld links the arm64 binary with no
# cross toolchain (the host's cc would emit code for the host). Only for plain cargo: `cargo
# zigbuild` links with zig, and a linker the user has set is theirs.
if [[ $RUST_TARGET == aarch64-unknown-linux-musl && $CARGO == cargo \
  && -z ${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER:-} ]]; then
  build=(env CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld "${build[@]}")
fi
run "${build[@]}"
size=$(wc -c <"$bin" | tr -d ' ')
within_budget "$bin" "$size"
note "built $bin: $size bytes (budget $SIZE_BUDGET)"
