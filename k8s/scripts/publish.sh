#!/usr/bin/env bash
# `make load` (load): load the image of the nodes' platform into the current kubectl context's
# kind, minikube or k3d nodes, or push when REGISTRY is given. `make push` (push): push both
# platforms' images and their manifest list to REGISTRY.
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
