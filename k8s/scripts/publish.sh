#!/usr/bin/env bash
# `make load` (load): make the image pullable by the current kubectl context's nodes, or push it
# when REGISTRY is given. `make push` (push): push it to REGISTRY.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

context=
case ${1:-} in
  load) need_kubectl ;;
  push) [[ -n $REGISTRY ]] || die "REGISTRY is empty: make push REGISTRY=registry.example.com/you" ;;
  *) die "usage: publish.sh load|push" ;;
esac
tool=$(container_tool)
# Each on its own line: a failure inside an argument's $(...) would not stop the script.
tag=$(image_tag)
if [[ $1 == load ]]; then context=$(current_context); fi
publish_image "$tool" "$tag" "$context"
