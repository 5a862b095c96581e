#!/usr/bin/env bash
# `make scale`: scale the StatefulSet to REPLICAS pods and wait for it. The volumes of removed
# pods are kept, so a later scale-up finds their data again.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_kubectl
[[ $REPLICAS =~ ^[0-9]+$ ]] || die "REPLICAS=$REPLICAS: expected a whole number"
before=$(kubectl get statefulset hello-stateful -n "$NAMESPACE" -o 'jsonpath={.spec.replicas}') \
  || die "no StatefulSet hello-stateful in namespace $NAMESPACE: run \`make deploy\` first"
run kubectl scale statefulset/hello-stateful -n "$NAMESPACE" --replicas="$REPLICAS"
if ((REPLICAS < before)); then
  # Scale-down goes from the highest index, one pod at a time: wait until those are gone.
  pods=()
  for ((i = REPLICAS; i < before; i++)); do pods+=("pod/hello-stateful-$i"); done
  run kubectl wait --for=delete "${pods[@]}" -n "$NAMESPACE" --timeout="$ROLLOUT_TIMEOUT"
  note "scaled down to $REPLICAS; the volumes of the removed pods are kept: scale up again and their data is back"
else
  run kubectl rollout status statefulset/hello-stateful -n "$NAMESPACE" --timeout="$ROLLOUT_TIMEOUT"
  note "scaled to $REPLICAS"
fi
