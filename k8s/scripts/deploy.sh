#!/usr/bin/env bash
# `make deploy` (after `make image`): load or push the image, apply k8s/ with the chosen ingress
# in NAMESPACE, wait for the rollout, and print how to reach the pods.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_kubectl
ctx=$(current_context)
ingress=$(resolve_ingress)
monitoring=$(resolve_monitoring)
tool=$(container_tool)
tag=$(image_tag)
ns=$NAMESPACE
note "deploying $IMAGE:$tag to context $ctx, namespace $ns, ingress $ingress, monitoring $monitoring"
# The custom kinds must be known to the cluster, or `apply` fails halfway with "no matches
# for kind": check first and say what to install.
if [[ $ingress == traefik || $ingress == gateway || $monitoring == podmonitor ]]; then
  kinds=$(kubectl api-resources -o name 2>/dev/null || true)
  if [[ $ingress == traefik ]] && ! grep -qx 'middlewares.traefik.io' <<<"$kinds"; then
    die "INGRESS=traefik, but the cluster has no Traefik Middleware kind (middlewares.traefik.io): install Traefik v2.10+ or v3, or pass INGRESS=nginx or INGRESS=none"
  fi
  if [[ $ingress == gateway ]] && ! grep -qx 'httproutes.gateway.networking.k8s.io' <<<"$kinds"; then
    die "INGRESS=gateway, but the cluster has no HTTPRoute kind: install the Gateway API CRDs and an implementation, or pass INGRESS=nginx or INGRESS=none"
  fi
  if [[ $monitoring == podmonitor ]] && ! grep -qx 'podmonitors.monitoring.coreos.com' <<<"$kinds"; then
    die "MONITORING=podmonitor, but the cluster has no PodMonitor kind (podmonitors.monitoring.coreos.com): install the Prometheus Operator (kube-prometheus-stack, for example), or pass MONITORING=none"
  fi
fi
publish_image "$tool" "$tag" "$ctx"
if ! kubectl get namespace "$ns" >/dev/null 2>&1; then
  run kubectl create namespace "$ns"
  # A namespace made here enforces the restricted Pod Security Standard the pods are built for.
  run kubectl label namespace "$ns" pod-security.kubernetes.io/enforce=restricted
fi
# Keep a count set by `make scale` unless REPLICAS is given: a redeploy should not undo it.
if [[ -n $REPLICAS_GIVEN ]]; then replicas=$REPLICAS
else replicas=$(kubectl get statefulset hello-stateful -n "$ns" -o 'jsonpath={.spec.replicas}' --ignore-not-found 2>/dev/null || true)
fi
new_overlay
render_overlay "$overlay" "$ingress" "$(pod_image_name "$tool")" "$tag" "$replicas"
run kubectl apply -k "$overlay"
if ! run kubectl rollout status statefulset/hello-stateful -n "$ns" --timeout="$ROLLOUT_TIMEOUT"; then
  die "the rollout did not finish within $ROLLOUT_TIMEOUT: see \`make status\`, \`kubectl describe pod -n $ns -l $APP_LABEL\` and \`make logs\` (README: Troubleshooting)"
fi

printf '\nhello-stateful is running in namespace %s (image %s:%s).\n' "$ns" "$(pod_image_name "$tool")" "$tag"
printf 'Through the API server:\n  kubectl proxy &\n'
printf '  curl localhost:8001/api/v1/namespaces/%s/pods/hello-stateful-0/proxy/store -d xxx\n' "$ns"
printf '  curl localhost:8001/api/v1/namespaces/%s/pods/hello-stateful-0/proxy/get\n' "$ns"
if [[ $ingress != none ]]; then
  addr=$(ingress_address "$ingress")
  if [[ -n $addr ]]; then
    printf 'Through the %s ingress:\n' "$ingress"
  else
    if [[ $ingress == gateway ]]; then object="gateway $GATEWAY" object_ns=${GATEWAY_NAMESPACE:-$ns}
    else object='ingress hello-stateful' object_ns=$ns; fi
    printf 'Through the %s ingress, once it has an address (kubectl get %s -n %s):\n' "$ingress" "$object" "$object_ns"
    addr='<address>'
  fi
  printf '  curl http://%s/stateful/store -d xxx\n  curl http://%s/stateful/get\n' "$addr" "$addr"
fi
echo 'Check it all: make smoke. Then: make status, make logs, make scale REPLICAS=n.'
