#!/usr/bin/env bash
# `make smoke`: store and read back through `kubectl proxy` and through the ingress, and fail
# loudly on a wrong answer: a store must answer "hello from v2:<pod>", that pod's /data must hold
# what was stored, and /get must list the peers.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_kubectl
need curl "install curl"
ns=$NAMESPACE
ingress=$(resolve_ingress)
checks=0
fail() { printf 'make smoke: FAILED: %s\n' "$*" >&2; exit 1; }
ok() { checks=$((checks + 1)); printf 'smoke: ok: %s\n' "$*"; }
fetch() { curl -sS --max-time 10 --fail-with-body "$@"; }

# kubectl proxy on a free port, which it prints once it serves.
log=$(mktemp)
kubectl proxy --port=0 >"$log" 2>&1 &
proxy=$!
trap 'kill "$proxy" 2>/dev/null || true; rm -f "$log"' EXIT
port=
for _ in $(seq 100); do
  port=$(sed -n 's/^Starting to serve on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$log")
  [[ -n $port ]] && break
  kill -0 "$proxy" 2>/dev/null || fail "kubectl proxy exited: $(cat "$log")"
  sleep 0.1
done
[[ -n $port ]] || fail "kubectl proxy did not start within 10 s: $(cat "$log")"

pods="http://127.0.0.1:$port/api/v1/namespaces/$ns/pods"
token="smoke $(date +%s)-$RANDOM"
reply=$(fetch --data-binary "$token proxy"$'\n' "$pods/hello-stateful-0/proxy/store") || fail "POST /store through kubectl proxy: $reply"
[[ $reply == 'hello from v2:hello-stateful-0' ]] || fail "POST /store through kubectl proxy answered '$reply', expected 'hello from v2:hello-stateful-0'"
ok "POST /store through kubectl proxy"
reply=$(fetch --data-binary "$token root"$'\n' "$pods/hello-stateful-0/proxy/") || fail "POST / through kubectl proxy: $reply"
[[ $reply == 'hello from v2:hello-stateful-0' ]] || fail "POST / through kubectl proxy answered '$reply', expected 'hello from v2:hello-stateful-0'"
ok "POST / (the seed's example) through kubectl proxy"
data=$(fetch "$pods/hello-stateful-0/proxy/data") || fail "GET /data through kubectl proxy: $data"
[[ $data == *"$token proxy"* && $data == *"$token root"* ]] || fail "GET /data of hello-stateful-0 lacks what was just stored ('$token proxy', '$token root')"
ok "GET /data returns what was stored"
get=$(fetch "$pods/hello-stateful-0/proxy/get") || fail "GET /get through kubectl proxy: $get"
[[ $(head -n 1 <<<"$get") == hello-stateful-service.$ns.svc.*. ]] || fail "GET /get: first line '$(head -n 1 <<<"$get")' is not hello-stateful-service.$ns.svc.<zone>."
grep -q "^hello-stateful-0\.hello-stateful-service\.$ns\.svc\..*\.:8000$" <<<"$get" || fail "GET /get does not list hello-stateful-0:8000: $get"
ok "GET /get lists the peers ($(($(wc -l <<<"$get") - 1)) records)"

if [[ $ingress == none ]]; then
  echo 'smoke: SKIPPED: the ingress checks: INGRESS=none'
else
  addr=$(ingress_address "$ingress")
  if [[ -z $addr ]]; then
    echo "smoke: SKIPPED: the ingress checks: the $ingress ingress has no address yet (pass INGRESS_HOST=host[:port] to check one)"
  else
    reply=$(fetch --data-binary "$token ingress"$'\n' "http://$addr/stateful/store") || fail "POST http://$addr/stateful/store: $reply"
    [[ $reply =~ ^hello\ from\ v2:(hello-stateful-[0-9]+)$ ]] || fail "POST http://$addr/stateful/store answered '$reply', expected 'hello from v2:hello-stateful-N'"
    pod=${BASH_REMATCH[1]}
    ok "POST /stateful/store through the ingress at $addr (stored on $pod)"
    data=$(fetch "$pods/$pod/proxy/data") || fail "GET /data of $pod: $data"
    [[ $data == *"$token ingress"* ]] || fail "what was stored through the ingress is not in $pod's /data"
    ok "$pod's /data has what was stored through the ingress"
    get=$(fetch "http://$addr/stateful/get") || fail "GET http://$addr/stateful/get: $get"
    [[ $(head -n 1 <<<"$get") == hello-stateful-service.$ns.svc.*. ]] || fail "GET http://$addr/stateful/get answered '$get'"
    ok "GET /stateful/get through the ingress"
  fi
fi
echo "smoke: $checks passed, 0 failed"
