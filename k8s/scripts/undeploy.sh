#!/usr/bin/env bash
# `make undeploy`: delete what the manifests created, but keep the volumes (PVCs), so that the
# next `make deploy` finds its data again.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_kubectl
# Every kind the manifests may create, the custom ones only where the cluster knows them
# (deleting an unknown kind is an error). PersistentVolumeClaims are not in the list.
kinds=statefulsets.apps,services,ingresses.networking.k8s.io,poddisruptionbudgets.policy
known=$(kubectl api-resources -o name 2>/dev/null || true)
for k in middlewares.traefik.io httproutes.gateway.networking.k8s.io podmonitors.monitoring.coreos.com; do
  if grep -qx "$k" <<<"$known"; then kinds+=",$k"; fi
done
run kubectl delete "$kinds" -n "$NAMESPACE" -l "$APP_LABEL" --ignore-not-found --cascade=foreground --wait=true
pvcs=$(kubectl get pvc -n "$NAMESPACE" -l "$APP_LABEL" -o name 2>/dev/null || true)
if [[ -n $pvcs ]]; then
  # shellcheck disable=SC2086 # unquoted on purpose: one line of names
  note "kept the volumes, so the next \`make deploy\` finds its data again: $(echo $pvcs | tr '\n' ' ')"
  note "\`make purge NAMESPACE=$NAMESPACE\` deletes them"
fi
