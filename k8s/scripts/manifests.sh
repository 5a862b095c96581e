#!/usr/bin/env bash
# `make manifests`: print what `make deploy` would apply, from the same overlay (same INGRESS,
# NAMESPACE, TAG, ...).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_kubectl
ingress=$(resolve_ingress)
# The pods' image name depends on the container tool only without a registry.
tool=${CONTAINER_TOOL:-docker}
[[ -n $REGISTRY || -n $CONTAINER_TOOL ]] || tool=$(container_tool)
tag=$(image_tag)
replicas=
if [[ -n $REPLICAS_GIVEN ]]; then replicas=$REPLICAS; fi
new_overlay
render_overlay "$overlay" "$ingress" "$(pod_image_name "$tool")" "$tag" "$replicas"
kubectl kustomize "$overlay"
