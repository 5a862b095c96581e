#!/usr/bin/env bash
# `make image`: the linux/amd64 and linux/arm64 FROM scratch images, each from its own static
# binary, tagged from their content and each within the size budget; with podman also the
# manifest list naming both, under the tag itself.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tool=$(container_tool)
for platform in "${PLATFORMS[@]}"; do
  target=$(rust_target_of "$platform")
  RUST_TARGET=$target bash "$root/k8s/scripts/build.sh"
done
tag=$(image_tag)
name=$(local_name "$tool")
for platform in "${PLATFORMS[@]}"; do
  # Each build context is a directory holding only its binary (no .dockerignore to keep right).
  context="$IMAGE_CONTEXT/${platform#linux/}"
  rm -rf "$context" && mkdir -p "$context"
  cp "$(bin_of "$(rust_target_of "$platform")")" "$context/hello-stateful"
  ref=$(platform_image "$name" "$tag" "$platform")
  # No network (nothing to fetch: FROM scratch, the binary is in the context). The platform is
  # the binary's, not the build machine's; with no RUN step nothing of it executes here.
  run "$tool" build --network=none --platform="$platform" --build-arg VERSION="$VERSION" \
    -f "$root/Dockerfile" -t "$ref" "$context"
  size=$("$tool" image inspect --format '{{.Size}}' "$ref")
  within_budget "image $ref" "$size"
  note "built image $ref: $size bytes"
done
list="$name:$tag"
if [[ $tool == podman ]]; then
  # Made anew each time: `manifest create` refuses a name in use, and an unchanged build keeps
  # its tag. A plain image holding the name (an older build given the same TAG=) lets go of it.
  if podman manifest exists "$list" 2>/dev/null; then run podman manifest rm "$list" >/dev/null
  elif podman image exists "$list"; then run podman untag "$list" "$list"
  fi
  run podman manifest create "$list" >/dev/null
  for platform in "${PLATFORMS[@]}"; do
    # containers-storage: the local image; a bare name would be looked up in a registry.
    run podman manifest add "$list" "containers-storage:$(platform_image "$name" "$tag" "$platform")" >/dev/null
  done
  note "built manifest list $list: linux/amd64 and linux/arm64"
else
  note "docker holds no manifest list locally: made only the per-platform tags $name:$tag-amd64 and $name:$tag-arm64. \`make push\` makes the list $tag in the registry; \`make deploy\` without one gives the name $list to the image of the nodes' platform"
fi
