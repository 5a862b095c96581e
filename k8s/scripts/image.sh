#!/usr/bin/env bash
# `make image`: the FROM scratch image with docker or podman, tagged from its content, within
# the size budget.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tool=$(container_tool)
# The build context is a directory holding only the binary (no .dockerignore to keep right).
rm -rf "$IMAGE_CONTEXT" && mkdir -p "$IMAGE_CONTEXT"
cp "$BIN" "$IMAGE_CONTEXT/hello-stateful"
tag=$(image_tag)
ref="$(local_name "$tool"):$tag"
# No network (nothing to fetch: FROM scratch, the binary is in the context); the platform
# is the binary's, not the build machine's (an arm64 Mac would otherwise label it arm64).
run "$tool" build --network=none --platform="$PLATFORM" --build-arg VERSION="$VERSION" \
  -f "$root/Dockerfile" -t "$ref" "$IMAGE_CONTEXT"
size=$("$tool" image inspect --format '{{.Size}}' "$ref")
within_budget "image $ref" "$size"
note "built image $ref: $size bytes"
