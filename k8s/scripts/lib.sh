# Shell functions for the Makefile's recipes and the scripts beside this file, which source it.
# They read the variables the Makefile exports (IMAGE, TAG, REGISTRY, NAMESPACE, BIN, ...), so
# they are meant to be run through `make`. Every tool is checked before use, so a missing one is
# a one-line message naming it and what to do, never a "command not found" deep in a recipe.
# shellcheck shell=bash disable=SC2153 # INGRESS, NAMESPACE, ...: set by the Makefile, not here

# The repository's root, whatever folder make was started from.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

die() { printf 'make: error: %s\n' "$*" >&2; exit 1; }
note() { printf 'make: %s\n' "$*" >&2; }
# Echo a command, then run it: what deploy does to a cluster is on the screen.
run() { printf '+ %s\n' "$*" >&2; "$@"; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"; }
need_kubectl() { need kubectl "install kubectl (https://kubernetes.io/docs/tasks/tools/) and point it at your cluster"; }
# CARGO may be a command with arguments (`cargo zigbuild`): its first word is the program.
need_cargo() { need "${CARGO%% *}" "install Rust with rustup (https://rustup.rs)"; }
# Fail when something built is over the size budget (the binary, the image): WHAT SIZE.
within_budget() { (($2 <= SIZE_BUDGET)) || die "$1 is $2 bytes, over the $SIZE_BUDGET-byte budget"; }
# Run another suite's script (tests/e2e/run, ...), which may not be in every checkout.
suite() { [[ -f $1 ]] || die "$1 not found"; bash "$1"; }
sha256() { if command -v sha256sum >/dev/null 2>&1; then sha256sum | cut -c1-64; else shasum -a 256 | cut -c1-64; fi; }

# make_venv VENV REQUIREMENTS: the Python tools of REQUIREMENTS in a virtual environment of their
# own, made from scratch, so a changed requirements file leaves nothing stale behind. The copy
# of REQUIREMENTS written last marks it complete (make compares its time with the file's).
make_venv() {
  local venv=$1 requirements=$2
  need python3 "install Python 3 (on Debian and Ubuntu: apt-get install python3 python3-venv)"
  rm -rf "$venv"
  if ! run python3 -m venv "$venv"; then
    rm -rf "$venv"
    die "python3 -m venv failed: on Debian and Ubuntu, install python3-venv (apt-get install python3-venv)"
  fi
  if ! run "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"; then
    rm -rf "$venv"
    die "could not install $requirements into $venv (pip says why above; it needs to reach PyPI, or the index set in pip.conf)"
  fi
  cp "$requirements" "$venv/requirements.txt"
}

container_tool() {
  if [[ -n $CONTAINER_TOOL ]]; then
    [[ $CONTAINER_TOOL == docker || $CONTAINER_TOOL == podman ]] \
      || die "CONTAINER_TOOL=$CONTAINER_TOOL: expected docker or podman"
    need "$CONTAINER_TOOL" "install it, or pass CONTAINER_TOOL=docker or CONTAINER_TOOL=podman"
    echo "$CONTAINER_TOOL"
  elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then echo docker
  elif command -v podman >/dev/null 2>&1; then echo podman
  elif command -v docker >/dev/null 2>&1; then echo docker
  else die "neither docker nor podman found: install one of them (or pass CONTAINER_TOOL=)"
  fi
}
# The tag: TAG if given, else derived from what goes into the image.
image_tag() {
  if [[ -n $TAG ]]; then echo "$TAG"; return; fi
  [[ -f $BIN ]] || die "$BIN not found: run \`make build\` first (or pass TAG=)"
  echo "$VERSION-$(cat "$BIN" "$root/Dockerfile" | sha256 | cut -c1-12)"
}
# The name the built image has locally: podman puts unqualified names under localhost/, and a
# pod must name the image exactly as the node's runtime stores it after loading.
local_name() { if [[ $1 == podman ]]; then echo "localhost/$IMAGE"; else echo "$IMAGE"; fi; }
# The name pods pull: the registry's when pushing, else the local one that gets loaded.
pod_image_name() { if [[ -n $REGISTRY ]]; then echo "${REGISTRY%/}/$IMAGE"; else local_name "$1"; fi; }

current_context() {
  kubectl config current-context 2>/dev/null \
    || die "no current kubectl context: create a cluster (kind create cluster, minikube start, k3d cluster create) or choose one (kubectl config use-context NAME)"
}
# kind, minikube, k3d or shared (Docker Desktop, OrbStack: the cluster sees the engine's images).
cluster_type() {
  local ctx=$1
  case $ctx in
    kind-*) echo kind; return ;;
    k3d-*) echo k3d; return ;;
    minikube) echo minikube; return ;;
    docker-desktop|orbstack) echo shared; return ;;
  esac
  # A minikube profile other than the default one: minikube marks its kubeconfig entries.
  if [[ $(kubectl config view --minify -o 'jsonpath={.contexts[0].context.extensions[?(@.name=="context_info")].extension.provider}' 2>/dev/null) == minikube.sigs.k8s.io ]]; then
    echo minikube; return
  fi
  echo other
}
resolve_ingress() {
  case $INGRESS in
    nginx|traefik|gateway|none) echo "$INGRESS"; return ;;
    auto|'') ;;
    *) die "INGRESS=$INGRESS: expected nginx, traefik, gateway, none or auto" ;;
  esac
  need_kubectl
  local ctx; ctx=$(current_context)
  if [[ $ctx == k3d-* ]]; then
    note "INGRESS=auto: traefik (k3d cluster $ctx bundles Traefik; pass INGRESS= to choose)"; echo traefik; return
  fi
  if [[ $(kubectl get nodes -o 'jsonpath={.items[*].status.nodeInfo.kubeletVersion}' 2>/dev/null) == *k3s* ]]; then
    note "INGRESS=auto: traefik (the nodes run k3s, which bundles Traefik; pass INGRESS= to choose)"; echo traefik; return
  fi
  note "INGRESS=auto: nginx (ingress-nginx, as on kind and minikube; pass INGRESS=traefik, gateway or none to choose)"
  echo nginx
}
# MONITORING, checked: none, or podmonitor (a PodMonitor for the Prometheus Operator).
resolve_monitoring() {
  case $MONITORING in
    none|'') echo none ;;
    podmonitor) echo podmonitor ;;
    *) die "MONITORING=$MONITORING: expected none or podmonitor" ;;
  esac
}

# A new directory for the overlay `make deploy` applies, inside k8s/ so that the base and the
# components are plain relative paths (kustomize loads nothing from above an overlay), removed
# when the script exits. Sets $overlay.
new_overlay() {
  overlay=$(mktemp -d "$root/k8s/.overlay.XXXXXX")
  trap 'rm -rf "$overlay"' EXIT
}
# Write that overlay: DIR INGRESS IMAGE-NAME TAG [REPLICAS], with the component MONITORING
# names. `make manifests` and the manifest tests render this same overlay, so what is validated
# is what is applied.
render_overlay() {
  local dir=$1 ingress=$2 name=$3 tag=$4 replicas=$5 component monitoring patches=''
  case $ingress in
    nginx) component='ingress-nginx' ;;
    traefik) component='ingress-traefik' ;;
    gateway) component=gateway ;;
    none) component='no-ingress' ;;
    *) die "INGRESS=$ingress: expected nginx, traefik, gateway or none" ;;
  esac
  monitoring=$(resolve_monitoring)
  [[ $NAMESPACE =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] || die "NAMESPACE=$NAMESPACE is not a valid namespace name"
  # Optional patches, only the ones that apply (kustomize rejects an empty patch list).
  if [[ -n $STORAGE_CLASS ]]; then
    add_patch StatefulSet add /spec/volumeClaimTemplates/0/spec/storageClassName "value: \"$STORAGE_CLASS\""
  fi
  if [[ $ingress == traefik ]]; then
    # Traefik names a Middleware <namespace>-<name>@kubernetescrd: follow the namespace.
    add_patch Ingress replace /metadata/annotations/traefik.ingress.kubernetes.io~1router.middlewares \
      "value: $NAMESPACE-hello-stateful-strip-prefix@kubernetescrd"
  fi
  if [[ $ingress == gateway ]]; then
    add_patch HTTPRoute replace /spec/parentRefs/0 'value:' "  name: \"$GATEWAY\"" \
      ${GATEWAY_NAMESPACE:+"  namespace: \"$GATEWAY_NAMESPACE\""}
  fi
  {
    cat <<EOF
# Generated by make: k8s/base with the $ingress ingress, monitoring $monitoring, in namespace $NAMESPACE.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: $NAMESPACE
resources:
  - ../base
components:
  - ../components/$component
EOF
    if [[ $monitoring == podmonitor ]]; then echo '  - ../components/podmonitor'; fi
    cat <<EOF
images:
  - name: hello-stateful
    newName: $name
    newTag: "$tag"
EOF
    if [[ -n $replicas ]]; then
      cat <<EOF
replicas:
  - name: hello-stateful
    count: $replicas
EOF
    fi
    if [[ -n $patches ]]; then printf 'patches:\n%s' "$patches"; fi
  } >"$dir/kustomization.yaml"
}
# Add an entry to render_overlay's `patches`: a JSON patch of the object of KIND named
# hello-stateful. KIND OP PATH VALUE-LINE...
add_patch() {
  local kind=$1 op=$2 path=$3 entry
  shift 3
  printf -v entry '  - target: {kind: %s, name: hello-stateful}\n    patch: |-\n      - op: %s\n        path: %s\n' \
    "$kind" "$op" "$path"
  patches+=$entry
  printf -v entry '        %s\n' "$@"
  patches+=$entry
}

# The ingress's or Gateway's address from its status ('' while it has none).
ingress_address() {
  local ingress=$1
  if [[ -n $INGRESS_HOST ]]; then echo "$INGRESS_HOST"; return; fi
  case $ingress in
    nginx|traefik)
      kubectl get ingress hello-stateful -n "$NAMESPACE" -o 'jsonpath={.status.loadBalancer.ingress[0].ip}{.status.loadBalancer.ingress[0].hostname}' 2>/dev/null || true ;;
    gateway)
      kubectl get gateways.gateway.networking.k8s.io "$GATEWAY" -n "${GATEWAY_NAMESPACE:-$NAMESPACE}" -o 'jsonpath={.status.addresses[0].value}' 2>/dev/null || true ;;
  esac
}
# Make the image pullable by the current context's nodes: push to REGISTRY, or load it into
# the kind, minikube or k3d nodes (no registry needed).
publish_image() {
  local tool=$1 tag=$2 ctx=$3 ref type archive
  ref="$(local_name "$tool"):$tag"
  if [[ -n $REGISTRY ]]; then
    local remote="${REGISTRY%/}/$IMAGE:$tag"
    run "$tool" tag "$ref" "$remote"
    run "$tool" push "$remote" || die "push to $REGISTRY failed: log in first ($tool login ${REGISTRY%%/*}) and check the cluster can pull from it"
    return
  fi
  type=$(cluster_type "$ctx")
  # kind, minikube and k3d load an image from the docker engine by name; podman's images are
  # handed over as an archive (`podman save`), which all three accept.
  if [[ $tool == podman && $type =~ ^(kind|minikube|k3d)$ ]]; then
    archive="$IMAGE_CONTEXT/$IMAGE-$tag.tar"
    run podman save --format docker-archive -o "$archive" "$ref"
  fi
  case $type in
    kind)
      need kind "install kind (https://kind.sigs.k8s.io/docs/user/quick-start/), or pass REGISTRY= to push instead"
      if [[ $tool == podman ]]; then run kind load image-archive "$archive" --name "${ctx#kind-}"
      else run kind load docker-image "$ref" --name "${ctx#kind-}"; fi ;;
    minikube)
      need minikube "install minikube (https://minikube.sigs.k8s.io/docs/start/), or pass REGISTRY= to push instead"
      if [[ $tool == podman ]]; then run minikube image load "$archive" -p "$ctx"
      else run minikube image load "$ref" -p "$ctx"; fi ;;
    k3d)
      need k3d "install k3d (https://k3d.io), or pass REGISTRY= to push instead"
      if [[ $tool == podman ]]; then run k3d image import "$archive" -c "${ctx#k3d-}"
      else run k3d image import "$ref" -c "${ctx#k3d-}"; fi ;;
    shared)
      [[ $tool == docker ]] || die "context $ctx sees docker's images, not podman's: pass CONTAINER_TOOL=docker or REGISTRY="
      note "context $ctx uses the docker engine's images: nothing to load" ;;
    *)
      die "kubectl context '$ctx' is not a kind, minikube or k3d cluster, so the image cannot be loaded into its nodes: push it to a registry the cluster pulls from with REGISTRY=registry.example.com/you (log in first: $tool login registry.example.com)" ;;
  esac
  if [[ -n ${archive:-} ]]; then rm -f "$archive"; fi
}
