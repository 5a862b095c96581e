# Shell functions for the Makefile's recipes and the scripts beside this file, which source it.
# They read the variables the Makefile exports (IMAGE, TAG, REGISTRY, NAMESPACE, RUST_TARGET,
# ...), so they are meant to be run through `make`. Every tool is checked before use, so a
# missing one is a one-line message naming it and what to do, never a "command not found" deep
# in a recipe.
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
# The platforms `make image` builds, each from the static binary of its Rust target. Nothing in
# the images runs at build time, so neither needs emulation on the other's machines.
PLATFORMS=(linux/amd64 linux/arm64)
rust_target_of() {
  case $1 in
    linux/amd64) echo x86_64-unknown-linux-musl ;;
    linux/arm64) echo aarch64-unknown-linux-musl ;;
    *) die "no Rust target for platform $1" ;;
  esac
}
# Where cargo puts the release binary of a Rust target.
bin_of() { echo "$CARGO_TARGET_DIR/$1/release/hello-stateful"; }
# The tag: TAG if given, else derived from what goes into the images: both binaries and the
# Dockerfile, each hashed on its own (no two different sets of files hash alike), so an unchanged
# build keeps its tag and a change to either binary rolls out everywhere. Each platform's image is
# <tag>-amd64 or <tag>-arm64; <tag> itself names the manifest list.
image_tag() {
  if [[ -n $TAG ]]; then echo "$TAG"; return; fi
  local platform bin sums=''
  for platform in "${PLATFORMS[@]}"; do
    bin=$(bin_of "$(rust_target_of "$platform")")
    [[ -f $bin ]] || die "$bin not found: run \`make image\` first (it builds both binaries), or pass TAG="
    sums+="$(sha256 <"$bin")"$'\n'
  done
  sums+="$(sha256 <"$root/Dockerfile")"$'\n'
  echo "$VERSION-$(printf '%s' "$sums" | sha256 | cut -c1-12)"
}
# The image of one platform: NAME TAG PLATFORM.
platform_image() { echo "$1:$2-${3#linux/}"; }
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
# The platform of the current context's nodes, linux/amd64 or linux/arm64: CONTEXT. A cluster of
# both gets no loaded image: loading puts one image under the pods' one name into every node,
# and only a registry's manifest list lets that name mean each node's own.
node_platform() {
  local ctx=$1 archs arch
  archs=$(kubectl get nodes -o 'jsonpath={.items[*].status.nodeInfo.architecture}') \
    || die "could not list the nodes of context $ctx to learn their architecture"
  archs=$(tr ' ' '\n' <<<"$archs" | sed '/^$/d' | sort -u | tr '\n' ' ')
  archs=${archs% }
  [[ -n $archs ]] || die "context $ctx has no nodes yet: wait until \`kubectl get nodes\` lists them"
  for arch in $archs; do
    [[ $arch == amd64 || $arch == arm64 ]] \
      || die "context $ctx has $arch nodes: the images are built for amd64 and arm64 only"
  done
  if [[ $archs == *' '* ]]; then
    die "context $ctx has ${archs// / and } nodes: an image loaded into them has one architecture under the one name the pods use, so push instead and each node pulls its own from the manifest list: make deploy REGISTRY=registry.example.com/you (log in first)"
  fi
  echo "linux/$archs"
}
# Make the image pullable by the current context's nodes: TOOL TAG CONTEXT. With REGISTRY, push
# the images and their manifest list; else load the image of the nodes' platform into the kind,
# minikube or k3d nodes (no registry needed) under <name>:<tag>, the name the pods use.
publish_image() {
  local tool=$1 tag=$2 ctx=$3 name ref type platform image archive=''
  if [[ -n $REGISTRY ]]; then push_images "$tool" "$tag"; return; fi
  name=$(local_name "$tool")
  ref="$name:$tag"
  type=$(cluster_type "$ctx")
  case $type in
    kind) need kind "install kind (https://kind.sigs.k8s.io/docs/user/quick-start/), or pass REGISTRY= to push instead" ;;
    minikube) need minikube "install minikube (https://minikube.sigs.k8s.io/docs/start/), or pass REGISTRY= to push instead" ;;
    k3d) need k3d "install k3d (https://k3d.io), or pass REGISTRY= to push instead" ;;
    shared) [[ $tool == docker ]] || die "context $ctx sees docker's images, not podman's: pass CONTAINER_TOOL=docker or REGISTRY=" ;;
    *) die "kubectl context '$ctx' is not a kind, minikube or k3d cluster, so the image cannot be loaded into its nodes: push it to a registry the cluster pulls from with REGISTRY=registry.example.com/you (log in first: $tool login registry.example.com)" ;;
  esac
  platform=$(node_platform "$ctx")
  image=$(platform_image "$name" "$tag" "$platform")
  if [[ $type == shared ]]; then
    note "nodes are ${platform#linux/}: naming the $platform image $ref (context $ctx uses the docker engine's images: nothing to load)"
  else
    note "nodes are ${platform#linux/}: loading the $platform image"
  fi
  if [[ $tool == docker ]]; then
    # docker holds no manifest list locally, so the pods' name is given to the nodes' image.
    run docker tag "$image" "$ref"
  else
    # podman's <name>:<tag> is the manifest list: the archive carries the nodes' image alone,
    # under that name, so the pods' reference finds it in the node.
    archive="$IMAGE_CONTEXT/$IMAGE-$tag-${platform#linux/}.tar"
    rm -f "$archive"
    run podman push "$image" "docker-archive:$archive:$ref"
  fi
  # kind, minikube and k3d load an image from the docker engine by name, and podman's as an archive.
  case $type:$tool in
    kind:docker) run kind load docker-image "$ref" --name "${ctx#kind-}" ;;
    kind:podman) run kind load image-archive "$archive" --name "${ctx#kind-}" ;;
    minikube:docker) run minikube image load "$ref" -p "$ctx" ;;
    minikube:podman) run minikube image load "$archive" -p "$ctx" ;;
    k3d:docker) run k3d image import "$ref" -c "${ctx#k3d-}" ;;
    k3d:podman) run k3d image import "$archive" -c "${ctx#k3d-}" ;;
    shared:*) ;;
  esac
  if [[ -n $archive ]]; then rm -f "$archive"; fi
}
# Push both platforms' images to REGISTRY as <tag>-amd64 and <tag>-arm64, then the manifest list
# naming them as <tag>, the name the pods pull, so each node gets its own platform's: TOOL TAG.
push_images() {
  local tool=$1 tag=$2 name remote platform image failed list_with='' pushed=()
  name=$(local_name "$tool")
  remote="${REGISTRY%/}/$IMAGE"
  if [[ $tool == docker ]]; then
    # docker makes the list in the registry, from the pushed images. Checked before anything is
    # pushed, so a docker that cannot make it leaves no half-published tag behind.
    if docker manifest --help >/dev/null 2>&1; then list_with=manifest
    elif docker buildx version >/dev/null 2>&1; then list_with=buildx
    else die "this docker has neither \`docker manifest\` nor \`docker buildx\`, so it cannot make the manifest list $remote:$tag the pods pull: update docker (20.10 or later), or pass CONTAINER_TOOL=podman"
    fi
  fi
  for platform in "${PLATFORMS[@]}"; do
    image=$(platform_image "$remote" "$tag" "$platform")
    run "$tool" tag "$(platform_image "$name" "$tag" "$platform")" "$image"
    run "$tool" push "$image" || die "push to $REGISTRY failed: log in first ($tool login ${REGISTRY%%/*}) and check the cluster can pull from it"
    pushed+=("$image")
  done
  failed="pushing the manifest list $remote:$tag failed (the per-platform images are pushed: ${pushed[*]})"
  case $tool:$list_with in
    podman:) run podman manifest push --all "$name:$tag" "docker://$remote:$tag" || die "$failed" ;;
    docker:manifest)
      # --amend: docker keeps a local copy of each list it made, which a rebuilt tag would meet.
      run docker manifest create --amend "$remote:$tag" "${pushed[@]}" || die "$failed"
      run docker manifest push --purge "$remote:$tag" || die "$failed" ;;
    docker:buildx) run docker buildx imagetools create -t "$remote:$tag" "${pushed[@]}" || die "$failed" ;;
  esac
  note "pushed $remote:$tag, the manifest list of ${pushed[*]}"
}
