# hello-stateful: build it, test it, ship it to a Kubernetes cluster. Plain `make` lists targets.
#
# Usage: make <target> [VARIABLE=value ...], for example
#   make run                                  one replica on 127.0.0.1:8000, data in .data/hello
#   make test                                 cargo tests, then the manifest and Makefile checks
#   make deploy                               kind, minikube or k3d: found from the kubectl context
#   make deploy REGISTRY=ghcr.io/you          any cluster that can pull from that registry
#   make deploy INGRESS=gateway GATEWAY=eg GATEWAY_NAMESPACE=envoy-gateway-system
#   make scale REPLICAS=5                     then `make scale REPLICAS=3`: the volumes stay
#   make build CARGO="cargo zigbuild"         macOS: link the Linux musl binary with zig
#   make deploy RUST_TARGET=aarch64-unknown-linux-musl   arm64 nodes (kind on Apple silicon)

# Image name, without registry or tag.
IMAGE ?= hello-stateful
# Empty: <version>-<first 12 hex digits of the sha256 of the binary and the Dockerfile>, so an
# unchanged build keeps its tag (pods are not restarted) and a changed one rolls out.
TAG ?=
# Registry prefix to push to (registry.example.com/you); empty: load into kind/minikube/k3d.
REGISTRY ?=
NAMESPACE ?= default
# For `make scale`; `make deploy` uses it only when given, else keeps the running count (or 3).
REPLICAS ?= 3
# docker or podman; empty: docker if its engine answers, else podman, whichever is installed.
CONTAINER_TOOL ?=
CARGO ?= cargo
RUST_TARGET ?= x86_64-unknown-linux-musl
# nginx, traefik, gateway or none; auto: traefik on k3s and k3d, nginx elsewhere.
INGRESS ?= auto
# Gateway the HTTPRoute attaches to (INGRESS=gateway); empty namespace: the app's namespace.
GATEWAY ?= gateway
GATEWAY_NAMESPACE ?=
# Empty: the cluster's default StorageClass. Choose before the first deploy: a StatefulSet's
# volumeClaimTemplates cannot be changed later.
STORAGE_CLASS ?=
# Address of the ingress or Gateway for `make smoke` and the printed hints; empty: from status.
INGRESS_HOST ?=
ROLLOUT_TIMEOUT ?= 300s
LOG_TAIL ?= 100
# Kubernetes versions whose schemas the manifests are validated against (`make test-manifests`).
K8S_VERSIONS ?= 1.30 1.31 1.32 1.33 1.34 1.35 1.36 1.37

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
# Each recipe runs as one bash script, so its shell functions and variables carry across lines.
.ONESHELL:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

CARGO_TARGET_DIR ?= $(CURDIR)/target
export CARGO_TARGET_DIR
BIN := $(CARGO_TARGET_DIR)/$(RUST_TARGET)/release/hello-stateful
# The image's build context: a directory holding only the binary (no .dockerignore to keep right).
IMAGE_CONTEXT := $(CARGO_TARGET_DIR)/image
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
PLATFORM := $(if $(findstring aarch64,$(RUST_TARGET)),linux/arm64,linux/amd64)
# 1 MiB: the budget for the stripped binary and for the image (issue 3).
SIZE_BUDGET := 1048576
APP_LABEL := app.kubernetes.io/name=hello-stateful
# `make deploy` keeps the running replica count unless REPLICAS is given on the command line.
REPLICAS_GIVEN := $(filter command line environment,$(origin REPLICAS))

export IMAGE TAG REGISTRY NAMESPACE REPLICAS CONTAINER_TOOL INGRESS GATEWAY GATEWAY_NAMESPACE \
  STORAGE_CLASS INGRESS_HOST ROLLOUT_TIMEOUT RUST_TARGET BIN IMAGE_CONTEXT VERSION PLATFORM \
  SIZE_BUDGET APP_LABEL REPLICAS_GIVEN

# Shell functions shared by the recipes. Every tool is checked before use, so a missing one is
# a one-line message naming it and what to do, never a "command not found" deep in a recipe.
define LIB
die() { printf 'make: error: %s\n' "$$*" >&2; exit 1; }
note() { printf 'make: %s\n' "$$*" >&2; }
# Echo a command, then run it: what deploy does to a cluster is on the screen.
run() { printf '+ %s\n' "$$*" >&2; "$$@"; }
need() { command -v "$$1" >/dev/null 2>&1 || die "$$1 not found: $$2"; }
need_kubectl() { need kubectl "install kubectl (https://kubernetes.io/docs/tasks/tools/) and point it at your cluster"; }
sha256() { if command -v sha256sum >/dev/null 2>&1; then sha256sum | cut -c1-64; else shasum -a 256 | cut -c1-64; fi; }
container_tool() {
  if [[ -n $$CONTAINER_TOOL ]]; then
    [[ $$CONTAINER_TOOL == docker || $$CONTAINER_TOOL == podman ]] \
      || die "CONTAINER_TOOL=$$CONTAINER_TOOL: expected docker or podman"
    need "$$CONTAINER_TOOL" "install it, or pass CONTAINER_TOOL=docker or CONTAINER_TOOL=podman"
    echo "$$CONTAINER_TOOL"
  elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then echo docker
  elif command -v podman >/dev/null 2>&1; then echo podman
  elif command -v docker >/dev/null 2>&1; then echo docker
  else die "neither docker nor podman found: install one of them (or pass CONTAINER_TOOL=)"
  fi
}
# The tag: TAG if given, else derived from what goes into the image.
image_tag() {
  if [[ -n $$TAG ]]; then echo "$$TAG"; return; fi
  [[ -f $$BIN ]] || die "$$BIN not found: run \`make build\` first (or pass TAG=)"
  echo "$$VERSION-$$(cat "$$BIN" Dockerfile | sha256 | cut -c1-12)"
}
# The name the built image has locally: podman puts unqualified names under localhost/, and a
# pod must name the image exactly as the node's runtime stores it after loading.
local_name() { if [[ $$1 == podman ]]; then echo "localhost/$$IMAGE"; else echo "$$IMAGE"; fi; }
# The name pods pull: the registry's when pushing, else the local one that gets loaded.
pod_image_name() { if [[ -n $$REGISTRY ]]; then echo "$${REGISTRY%/}/$$IMAGE"; else local_name "$$1"; fi; }
current_context() {
  kubectl config current-context 2>/dev/null \
    || die "no current kubectl context: create a cluster (kind create cluster, minikube start, k3d cluster create) or choose one (kubectl config use-context NAME)"
}
# kind, minikube, k3d or shared (Docker Desktop, OrbStack: the cluster sees the engine's images).
cluster_type() {
  local ctx=$$1
  case $$ctx in
    kind-*) echo kind; return ;;
    k3d-*) echo k3d; return ;;
    minikube) echo minikube; return ;;
    docker-desktop|orbstack) echo shared; return ;;
  esac
  # A minikube profile other than the default one: minikube marks its kubeconfig entries.
  if [[ $$(kubectl config view --minify -o 'jsonpath={.contexts[0].context.extensions[?(@.name=="context_info")].extension.provider}' 2>/dev/null) == minikube.sigs.k8s.io ]]; then
    echo minikube; return
  fi
  echo other
}
resolve_ingress() {
  case $$INGRESS in
    nginx|traefik|gateway|none) echo "$$INGRESS"; return ;;
    auto|'') ;;
    *) die "INGRESS=$$INGRESS: expected nginx, traefik, gateway, none or auto" ;;
  esac
  need_kubectl
  local ctx; ctx=$$(current_context)
  if [[ $$ctx == k3d-* ]]; then
    note "INGRESS=auto: traefik (k3d cluster $$ctx bundles Traefik; pass INGRESS= to choose)"; echo traefik; return
  fi
  if [[ $$(kubectl get nodes -o 'jsonpath={.items[*].status.nodeInfo.kubeletVersion}' 2>/dev/null) == *k3s* ]]; then
    note "INGRESS=auto: traefik (the nodes run k3s, which bundles Traefik; pass INGRESS= to choose)"; echo traefik; return
  fi
  note "INGRESS=auto: nginx (ingress-nginx, as on kind and minikube; pass INGRESS=traefik, gateway or none to choose)"
  echo nginx
}
# Write the kustomization `make deploy` applies into $$1 (a directory inside k8s/, so the base
# and the components are plain relative paths). `make manifests` and the manifest tests render
# this same overlay, so what is validated is what is applied.
render_overlay() {
  local dir=$$1 ingress=$$2 name=$$3 tag=$$4 replicas=$$5 component
  case $$ingress in
    nginx) component=ingress-nginx ;;
    traefik) component=ingress-traefik ;;
    gateway) component=gateway ;;
    none) component=no-ingress ;;
    *) die "INGRESS=$$ingress: expected nginx, traefik, gateway or none" ;;
  esac
  [[ $$NAMESPACE =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$$ ]] || die "NAMESPACE=$$NAMESPACE is not a valid namespace name"
  {
    echo "# Generated by make: k8s/base with the $$ingress ingress, in namespace $$NAMESPACE."
    echo "apiVersion: kustomize.config.k8s.io/v1beta1"
    echo "kind: Kustomization"
    echo "namespace: $$NAMESPACE"
    echo "resources:"
    echo "  - ../base"
    echo "components:"
    echo "  - ../components/$$component"
    echo "images:"
    echo "  - name: hello-stateful"
    echo "    newName: $$name"
    echo "    newTag: \"$$tag\""
    if [[ -n $$replicas ]]; then
      echo "replicas:"
      echo "  - name: hello-stateful"
      echo "    count: $$replicas"
    fi
    # Optional patches, only the ones that apply (kustomize rejects an empty patch list).
    local patches=''
    if [[ -n $$STORAGE_CLASS ]]; then
      patches+="  - target: {kind: StatefulSet, name: hello-stateful}"$$'\n'
      patches+="    patch: |-"$$'\n'
      patches+="      - op: add"$$'\n'
      patches+="        path: /spec/volumeClaimTemplates/0/spec/storageClassName"$$'\n'
      patches+="        value: \"$$STORAGE_CLASS\""$$'\n'
    fi
    if [[ $$ingress == traefik ]]; then
      # Traefik names a Middleware <namespace>-<name>@kubernetescrd: follow the namespace.
      patches+="  - target: {kind: Ingress, name: hello-stateful}"$$'\n'
      patches+="    patch: |-"$$'\n'
      patches+="      - op: replace"$$'\n'
      patches+="        path: /metadata/annotations/traefik.ingress.kubernetes.io~1router.middlewares"$$'\n'
      patches+="        value: $$NAMESPACE-hello-stateful-strip-prefix@kubernetescrd"$$'\n'
    fi
    if [[ $$ingress == gateway ]]; then
      patches+="  - target: {kind: HTTPRoute, name: hello-stateful}"$$'\n'
      patches+="    patch: |-"$$'\n'
      patches+="      - op: replace"$$'\n'
      patches+="        path: /spec/parentRefs/0"$$'\n'
      patches+="        value:"$$'\n'
      patches+="          name: \"$$GATEWAY\""$$'\n'
      if [[ -n $$GATEWAY_NAMESPACE ]]; then patches+="          namespace: \"$$GATEWAY_NAMESPACE\""$$'\n'; fi
    fi
    if [[ -n $$patches ]]; then printf 'patches:\n%s' "$$patches"; fi
  } > "$$dir/kustomization.yaml"
}
new_overlay_dir() { mktemp -d "$(CURDIR)/k8s/.overlay.XXXXXX"; }
# The ingress's or Gateway's address from its status ('' while it has none).
ingress_address() {
  local ingress=$$1
  if [[ -n $$INGRESS_HOST ]]; then echo "$$INGRESS_HOST"; return; fi
  case $$ingress in
    nginx|traefik)
      kubectl get ingress hello-stateful -n "$$NAMESPACE" -o 'jsonpath={.status.loadBalancer.ingress[0].ip}{.status.loadBalancer.ingress[0].hostname}' 2>/dev/null || true ;;
    gateway)
      kubectl get gateways.gateway.networking.k8s.io "$$GATEWAY" -n "$${GATEWAY_NAMESPACE:-$$NAMESPACE}" -o 'jsonpath={.status.addresses[0].value}' 2>/dev/null || true ;;
  esac
}
# Make the image pullable by the current context's nodes: push to REGISTRY, or load it into
# the kind, minikube or k3d nodes (no registry needed).
publish_image() {
  local tool=$$1 tag=$$2 ctx=$$3 ref type archive
  ref="$$(local_name "$$tool"):$$tag"
  if [[ -n $$REGISTRY ]]; then
    local remote="$${REGISTRY%/}/$$IMAGE:$$tag"
    run "$$tool" tag "$$ref" "$$remote"
    run "$$tool" push "$$remote" || die "push to $$REGISTRY failed: log in first ($$tool login $${REGISTRY%%/*}) and check the cluster can pull from it"
    return
  fi
  type=$$(cluster_type "$$ctx")
  # kind, minikube and k3d load an image from the docker engine by name; podman's images are
  # handed over as an archive (`podman save`), which all three accept.
  if [[ $$tool == podman && $$type =~ ^(kind|minikube|k3d)$$ ]]; then
    archive="$$IMAGE_CONTEXT/$$IMAGE-$$tag.tar"
    run podman save --format docker-archive -o "$$archive" "$$ref"
  fi
  case $$type in
    kind)
      need kind "install kind (https://kind.sigs.k8s.io/docs/user/quick-start/), or pass REGISTRY= to push instead"
      if [[ $$tool == podman ]]; then run kind load image-archive "$$archive" --name "$${ctx#kind-}"
      else run kind load docker-image "$$ref" --name "$${ctx#kind-}"; fi ;;
    minikube)
      need minikube "install minikube (https://minikube.sigs.k8s.io/docs/start/), or pass REGISTRY= to push instead"
      if [[ $$tool == podman ]]; then run minikube image load "$$archive" -p "$$ctx"
      else run minikube image load "$$ref" -p "$$ctx"; fi ;;
    k3d)
      need k3d "install k3d (https://k3d.io), or pass REGISTRY= to push instead"
      if [[ $$tool == podman ]]; then run k3d image import "$$archive" -c "$${ctx#k3d-}"
      else run k3d image import "$$ref" -c "$${ctx#k3d-}"; fi ;;
    shared)
      [[ $$tool == docker ]] || die "context $$ctx sees docker's images, not podman's: pass CONTAINER_TOOL=docker or REGISTRY="
      note "context $$ctx uses the docker engine's images: nothing to load" ;;
    *)
      die "kubectl context '$$ctx' is not a kind, minikube or k3d cluster, so the image cannot be loaded into its nodes: push it to a registry the cluster pulls from with REGISTRY=registry.example.com/you (log in first: $$tool login registry.example.com)" ;;
  esac
  if [[ -n $${archive:-} ]]; then rm -f "$$archive"; fi
}
endef

##@ Develop

.PHONY: help
help: ## Show the targets and the main variables
	@awk 'BEGIN { FS = ":.*## " }
	  /^##@ / { printf "\n%s\n", substr($$0, 5) }
	  /^[a-zA-Z0-9_-]+:.*## / { printf "  %-16s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
	printf '\nVariables (make TARGET NAME=value): IMAGE=%s TAG=%s REGISTRY=%s NAMESPACE=%s\n' \
	  '$(IMAGE)' '$(or $(TAG),<from content>)' '$(REGISTRY)' '$(NAMESPACE)'
	printf '  REPLICAS=%s INGRESS=%s CONTAINER_TOOL=%s CARGO=%s RUST_TARGET=%s STORAGE_CLASS=%s\n' \
	  '$(REPLICAS)' '$(INGRESS)' '$(or $(CONTAINER_TOOL),<docker or podman>)' '$(CARGO)' \
	  '$(RUST_TARGET)' '$(or $(STORAGE_CLASS),<cluster default>)'
	echo 'See the comments at the top of the Makefile for each one.'

.PHONY: build
build: ## Build the stripped static musl release binary (adds the rustup target if missing)
	@$(LIB)
	need $(firstword $(CARGO)) "install Rust with rustup (https://rustup.rs)"
	if command -v rustup >/dev/null 2>&1; then
	  if ! rustup target list --installed | grep -qx "$(RUST_TARGET)"; then
	    run rustup target add "$(RUST_TARGET)" \
	      || die "could not add the Rust target $(RUST_TARGET): run 'rustup target add $(RUST_TARGET)' with network access, or install your toolchain's musl standard library"
	  fi
	else
	  note "rustup not found: assuming your Rust toolchain has the $(RUST_TARGET) standard library (if the build says \"can't find crate for std\", install it)"
	fi
	run $(CARGO) build --release --locked --target "$(RUST_TARGET)"
	size=$$(wc -c < "$(BIN)" | tr -d ' ')
	(( size <= SIZE_BUDGET )) || die "$(BIN) is $$size bytes, over the $(SIZE_BUDGET)-byte budget"
	note "built $(BIN): $$size bytes (budget $(SIZE_BUDGET))"

.PHONY: test
test: test-cargo test-manifests test-makefile ## Run every test: cargo tests, manifest checks, Makefile checks

.PHONY: test-cargo
test-cargo: ## Run the Rust unit and integration tests
	@$(LIB)
	need $(firstword $(CARGO)) "install Rust with rustup (https://rustup.rs)"
	run $(CARGO) test --locked

.PHONY: test-manifests
test-manifests: ## Validate the rendered manifests (schemas, policy, yamllint) and lint the Dockerfile
	@bash tests/manifests/run

.PHONY: test-makefile
test-makefile: ## Run the cluster targets against stand-in kubectl/kind/minikube/k3d/docker/podman
	@bash tests/makefile/run

.PHONY: lint
lint: ## rustfmt, clippy (warnings are errors), hadolint and yamllint
	@$(LIB)
	need $(firstword $(CARGO)) "install Rust with rustup (https://rustup.rs)"
	run $(CARGO) fmt --all --check
	run $(CARGO) clippy --locked --all-targets -- -D warnings
	need hadolint "pip install -r tests/requirements.txt"
	run hadolint Dockerfile
	need yamllint "pip install -r tests/requirements.txt"
	run yamllint --strict -c tests/manifests/yamllint.yaml k8s

.PHONY: run
run: ## Serve one replica on 127.0.0.1:8000 with its data in .data/hello
	@$(LIB)
	need $(firstword $(CARGO)) "install Rust with rustup (https://rustup.rs)"
	mkdir -p "$(CURDIR)/.data"
	note "serving on http://127.0.0.1:8000 (data: .data/hello); try: curl 127.0.0.1:8000/store -d hi"
	DATA_FILE="$(CURDIR)/.data/hello" LISTEN_ADDR=127.0.0.1:8000 RUST_LOG="$${RUST_LOG:-info}" \
	  $(CARGO) run --release --locked

.PHONY: clean
clean: ## Remove build output (keeps .data/, the local data of `make run`)
	@$(LIB)
	rm -rf "$(CURDIR)"/k8s/.overlay.*
	if command -v $(firstword $(CARGO)) >/dev/null 2>&1; then run $(CARGO) clean; else run rm -rf "$(CARGO_TARGET_DIR)"; fi

##@ Image

.PHONY: image
image: build ## Build the FROM scratch image with docker or podman, tagged from its content
	@$(LIB)
	tool=$$(container_tool)
	rm -rf "$(IMAGE_CONTEXT)" && mkdir -p "$(IMAGE_CONTEXT)"
	cp "$(BIN)" "$(IMAGE_CONTEXT)/hello-stateful"
	tag=$$(image_tag)
	ref="$$(local_name "$$tool"):$$tag"
	# No network (nothing to fetch: FROM scratch, the binary is in the context); the platform
	# is the binary's, not the build machine's (an arm64 Mac would otherwise label it arm64).
	run "$$tool" build --network=none --platform="$(PLATFORM)" --build-arg VERSION="$(VERSION)" \
	  -f "$(CURDIR)/Dockerfile" -t "$$ref" "$(IMAGE_CONTEXT)"
	size=$$("$$tool" image inspect --format '{{.Size}}' "$$ref")
	(( size <= SIZE_BUDGET )) || die "image $$ref is $$size bytes, over the $(SIZE_BUDGET)-byte budget"
	note "built image $$ref: $$size bytes"

.PHONY: load
load: image ## Make the image pullable by the current kubectl context (kind, minikube, k3d; REGISTRY= pushes)
	@$(LIB)
	need_kubectl
	tool=$$(container_tool)
	# Each on its own line: a failure inside an argument's $$(...) would not stop the recipe.
	tag=$$(image_tag)
	context=$$(current_context)
	publish_image "$$tool" "$$tag" "$$context"

.PHONY: push
push: image ## Push the image to REGISTRY
	@$(LIB)
	[[ -n "$(REGISTRY)" ]] || die "REGISTRY is empty: make push REGISTRY=registry.example.com/you"
	tool=$$(container_tool)
	tag=$$(image_tag)
	publish_image "$$tool" "$$tag" ""

##@ Cluster

.PHONY: manifests
manifests: ## Print the manifests `make deploy` would apply (same INGRESS, NAMESPACE, TAG, ...)
	@$(LIB)
	need_kubectl
	ingress=$$(resolve_ingress)
	tool=$${CONTAINER_TOOL:-docker}
	[[ -n "$(REGISTRY)" || -n "$(CONTAINER_TOOL)" ]] || tool=$$(container_tool)
	tag=$$(image_tag)
	dir=$$(new_overlay_dir); trap 'rm -rf "$$dir"' EXIT
	render_overlay "$$dir" "$$ingress" "$$(pod_image_name "$$tool")" "$$tag" \
	  "$$( [[ -n "$(REPLICAS_GIVEN)" ]] && echo "$(REPLICAS)" || true)"
	kubectl kustomize "$$dir"

.PHONY: deploy
deploy: image ## Build, load or push the image, apply k8s/ with the chosen ingress, wait for the rollout
	@$(LIB)
	need_kubectl
	ctx=$$(current_context)
	ingress=$$(resolve_ingress)
	tool=$$(container_tool)
	tag=$$(image_tag)
	note "deploying $(IMAGE):$$tag to context $$ctx, namespace $(NAMESPACE), ingress $$ingress"
	# The custom kinds must be known to the cluster, or `apply` fails halfway with "no matches
	# for kind": check first and say what to install.
	if [[ $$ingress == traefik || $$ingress == gateway ]]; then
	  kinds=$$(kubectl api-resources -o name 2>/dev/null || true)
	  if [[ $$ingress == traefik ]] && ! grep -qx 'middlewares.traefik.io' <<<"$$kinds"; then
	    die "INGRESS=traefik, but the cluster has no Traefik Middleware kind (middlewares.traefik.io): install Traefik v2.10+ or v3, or pass INGRESS=nginx or INGRESS=none"
	  fi
	  if [[ $$ingress == gateway ]] && ! grep -qx 'httproutes.gateway.networking.k8s.io' <<<"$$kinds"; then
	    die "INGRESS=gateway, but the cluster has no HTTPRoute kind: install the Gateway API CRDs and an implementation, or pass INGRESS=nginx or INGRESS=none"
	  fi
	fi
	publish_image "$$tool" "$$tag" "$$ctx"
	if ! kubectl get namespace "$(NAMESPACE)" >/dev/null 2>&1; then
	  run kubectl create namespace "$(NAMESPACE)"
	  # A namespace made here enforces the restricted Pod Security Standard the pods are built for.
	  run kubectl label namespace "$(NAMESPACE)" pod-security.kubernetes.io/enforce=restricted
	fi
	# Keep a count set by `make scale` unless REPLICAS is given: a redeploy should not undo it.
	replicas="$(REPLICAS_GIVEN)"
	if [[ -n $$replicas ]]; then replicas="$(REPLICAS)"
	else replicas=$$(kubectl get statefulset hello-stateful -n "$(NAMESPACE)" -o 'jsonpath={.spec.replicas}' --ignore-not-found 2>/dev/null || true)
	fi
	dir=$$(new_overlay_dir); trap 'rm -rf "$$dir"' EXIT
	render_overlay "$$dir" "$$ingress" "$$(pod_image_name "$$tool")" "$$tag" "$$replicas"
	run kubectl apply -k "$$dir"
	if ! run kubectl rollout status statefulset/hello-stateful -n "$(NAMESPACE)" --timeout="$(ROLLOUT_TIMEOUT)"; then
	  die "the rollout did not finish within $(ROLLOUT_TIMEOUT): see \`make status\`, \`kubectl describe pod -n $(NAMESPACE) -l $(APP_LABEL)\` and \`make logs\` (README: Troubleshooting)"
	fi
	ns="$(NAMESPACE)"
	printf '\nhello-stateful is running in namespace %s (image %s:%s).\n' "$$ns" "$$(pod_image_name "$$tool")" "$$tag"
	printf 'Through the API server:\n  kubectl proxy &\n'
	printf '  curl localhost:8001/api/v1/namespaces/%s/pods/hello-stateful-0/proxy/store -d xxx\n' "$$ns"
	printf '  curl localhost:8001/api/v1/namespaces/%s/pods/hello-stateful-0/proxy/get\n' "$$ns"
	if [[ $$ingress != none ]]; then
	  addr=$$(ingress_address "$$ingress")
	  if [[ -n $$addr ]]; then printf 'Through the %s ingress:\n' "$$ingress"
	  else printf 'Through the %s ingress, once it has an address (kubectl get %s -n %s):\n' "$$ingress" \
	    "$$( [[ $$ingress == gateway ]] && echo "gateway $(GATEWAY)" || echo 'ingress hello-stateful')" \
	    "$$( [[ $$ingress == gateway ]] && echo "$${GATEWAY_NAMESPACE:-$$ns}" || echo "$$ns")"; addr='<address>'; fi
	  printf '  curl http://%s/stateful/store -d xxx\n  curl http://%s/stateful/get\n' "$$addr" "$$addr"
	fi
	echo 'Check it all: make smoke. Then: make status, make logs, make scale REPLICAS=n.'

.PHONY: undeploy
undeploy: ## Delete hello-stateful from the cluster but keep its volumes (PVCs)
	@$(LIB)
	need_kubectl
	# Every kind the manifests may create, the custom ones only where the cluster knows them
	# (deleting an unknown kind is an error). PersistentVolumeClaims are not in the list.
	kinds=statefulsets.apps,services,ingresses.networking.k8s.io,poddisruptionbudgets.policy
	known=$$(kubectl api-resources -o name 2>/dev/null || true)
	for k in middlewares.traefik.io httproutes.gateway.networking.k8s.io; do
	  if grep -qx "$$k" <<<"$$known"; then kinds+=",$$k"; fi
	done
	run kubectl delete "$$kinds" -n "$(NAMESPACE)" -l "$(APP_LABEL)" --ignore-not-found --cascade=foreground --wait=true
	pvcs=$$(kubectl get pvc -n "$(NAMESPACE)" -l "$(APP_LABEL)" -o name 2>/dev/null || true)
	if [[ -n $$pvcs ]]; then
	  note "kept the volumes, so the next \`make deploy\` finds its data again: $$(echo $$pvcs | tr '\n' ' ')"
	  note "\`make purge NAMESPACE=$(NAMESPACE)\` deletes them"
	fi

.PHONY: purge
purge: undeploy ## Delete hello-stateful and its volumes: all stored data is lost
	@$(LIB)
	need_kubectl
	note "deleting the volumes (PVCs) of hello-stateful in namespace $(NAMESPACE): their data is gone for good"
	run kubectl delete pvc -n "$(NAMESPACE)" -l "$(APP_LABEL)" --ignore-not-found --wait=true

.PHONY: status
status: ## Show the StatefulSet, pods, volumes, Service, Ingress and PDB
	@$(LIB)
	need_kubectl
	run kubectl get statefulsets.apps,pods,pvc,services,ingresses.networking.k8s.io,poddisruptionbudgets.policy \
	  -n "$(NAMESPACE)" -l "$(APP_LABEL)" -o wide

.PHONY: logs
logs: ## Print the last LOG_TAIL log lines of every replica
	@$(LIB)
	need_kubectl
	run kubectl logs -n "$(NAMESPACE)" -l "$(APP_LABEL)" --all-containers --prefix --timestamps \
	  --tail="$(LOG_TAIL)" --max-log-requests=100

.PHONY: scale
scale: ## Scale to REPLICAS pods (volumes of removed pods are kept for the next scale-up)
	@$(LIB)
	need_kubectl
	[[ "$(REPLICAS)" =~ ^[0-9]+$$ ]] || die "REPLICAS=$(REPLICAS): expected a whole number"
	before=$$(kubectl get statefulset hello-stateful -n "$(NAMESPACE)" -o 'jsonpath={.spec.replicas}') \
	  || die "no StatefulSet hello-stateful in namespace $(NAMESPACE): run \`make deploy\` first"
	run kubectl scale statefulset/hello-stateful -n "$(NAMESPACE)" --replicas="$(REPLICAS)"
	if (( $(REPLICAS) < before )); then
	  # Scale-down goes from the highest index, one pod at a time: wait until those are gone.
	  pods=(); for ((i = $(REPLICAS); i < before; i++)); do pods+=("pod/hello-stateful-$$i"); done
	  run kubectl wait --for=delete "$${pods[@]}" -n "$(NAMESPACE)" --timeout="$(ROLLOUT_TIMEOUT)"
	  note "scaled down to $(REPLICAS); the volumes of the removed pods are kept: scale up again and their data is back"
	else
	  run kubectl rollout status statefulset/hello-stateful -n "$(NAMESPACE)" --timeout="$(ROLLOUT_TIMEOUT)"
	  note "scaled to $(REPLICAS)"
	fi

.PHONY: smoke
smoke: ## Store and read back through `kubectl proxy` and the ingress; fails loudly on a wrong answer
	@$(LIB)
	need_kubectl
	need curl "install curl"
	ns="$(NAMESPACE)"
	ingress=$$(resolve_ingress)
	checks=0
	fail() { printf 'make smoke: FAILED: %s\n' "$$*" >&2; exit 1; }
	ok() { checks=$$((checks + 1)); printf 'smoke: ok: %s\n' "$$*"; }
	fetch() { curl -sS --max-time 10 --fail-with-body "$$@"; }
	log=$$(mktemp)
	kubectl proxy --port=0 >"$$log" 2>&1 &
	proxy=$$!
	trap 'kill "$$proxy" 2>/dev/null || true; rm -f "$$log"' EXIT
	port=
	for _ in $$(seq 100); do
	  port=$$(sed -n 's/^Starting to serve on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$$log")
	  [[ -n $$port ]] && break
	  kill -0 "$$proxy" 2>/dev/null || fail "kubectl proxy exited: $$(cat "$$log")"
	  sleep 0.1
	done
	[[ -n $$port ]] || fail "kubectl proxy did not start within 10 s: $$(cat "$$log")"
	pods="http://127.0.0.1:$$port/api/v1/namespaces/$$ns/pods"
	token="smoke $$(date +%s)-$$RANDOM"
	reply=$$(fetch --data-binary "$$token proxy"$$'\n' "$$pods/hello-stateful-0/proxy/store") || fail "POST /store through kubectl proxy: $$reply"
	[[ $$reply == 'hello from v2:hello-stateful-0' ]] || fail "POST /store through kubectl proxy answered '$$reply', expected 'hello from v2:hello-stateful-0'"
	ok "POST /store through kubectl proxy"
	reply=$$(fetch --data-binary "$$token root"$$'\n' "$$pods/hello-stateful-0/proxy/") || fail "POST / through kubectl proxy: $$reply"
	[[ $$reply == 'hello from v2:hello-stateful-0' ]] || fail "POST / through kubectl proxy answered '$$reply', expected 'hello from v2:hello-stateful-0'"
	ok "POST / (the seed's example) through kubectl proxy"
	data=$$(fetch "$$pods/hello-stateful-0/proxy/data") || fail "GET /data through kubectl proxy: $$data"
	[[ $$data == *"$$token proxy"* && $$data == *"$$token root"* ]] || fail "GET /data of hello-stateful-0 lacks what was just stored ('$$token proxy', '$$token root')"
	ok "GET /data returns what was stored"
	get=$$(fetch "$$pods/hello-stateful-0/proxy/get") || fail "GET /get through kubectl proxy: $$get"
	[[ $$(head -n 1 <<<"$$get") == hello-stateful-service.$$ns.svc.*. ]] || fail "GET /get: first line '$$(head -n 1 <<<"$$get")' is not hello-stateful-service.$$ns.svc.<zone>."
	grep -q "^hello-stateful-0\.hello-stateful-service\.$$ns\.svc\..*\.:8000$$" <<<"$$get" || fail "GET /get does not list hello-stateful-0:8000: $$get"
	ok "GET /get lists the peers ($$(($$(wc -l <<<"$$get") - 1)) records)"
	if [[ $$ingress == none ]]; then
	  echo 'smoke: SKIPPED: the ingress checks: INGRESS=none'
	else
	  addr=$$(ingress_address "$$ingress")
	  if [[ -z $$addr ]]; then
	    echo "smoke: SKIPPED: the ingress checks: the $$ingress ingress has no address yet (pass INGRESS_HOST=host[:port] to check one)"
	  else
	    reply=$$(fetch --data-binary "$$token ingress"$$'\n' "http://$$addr/stateful/store") || fail "POST http://$$addr/stateful/store: $$reply"
	    [[ $$reply =~ ^hello\ from\ v2:(hello-stateful-[0-9]+)$$ ]] || fail "POST http://$$addr/stateful/store answered '$$reply', expected 'hello from v2:hello-stateful-N'"
	    pod=$${BASH_REMATCH[1]}
	    ok "POST /stateful/store through the ingress at $$addr (stored on $$pod)"
	    data=$$(fetch "$$pods/$$pod/proxy/data") || fail "GET /data of $$pod: $$data"
	    [[ $$data == *"$$token ingress"* ]] || fail "what was stored through the ingress is not in $$pod's /data"
	    ok "$$pod's /data has what was stored through the ingress"
	    get=$$(fetch "http://$$addr/stateful/get") || fail "GET http://$$addr/stateful/get: $$get"
	    [[ $$(head -n 1 <<<"$$get") == hello-stateful-service.$$ns.svc.*. ]] || fail "GET http://$$addr/stateful/get answered '$$get'"
	    ok "GET /stateful/get through the ingress"
	  fi
	fi
	echo "smoke: $$checks passed, 0 failed"

##@ Other checks (scripts of their own)

.PHONY: e2e
e2e: ## The StatefulSet emulated: podman pods, dnsmasq DNS, nginx ingress (tests/e2e/run; root)
	@$(LIB)
	[[ -f tests/e2e/run ]] || die "tests/e2e/run not found"
	bash tests/e2e/run

.PHONY: bench
bench: ## Throughput and memory measurements (benches/run)
	@$(LIB)
	[[ -f benches/run ]] || die "benches/run not found"
	bash benches/run

.PHONY: faults
faults: ## Fault injection: kill -9, full disk, dead DNS, SIGTERM, hostile clients (tests/faults/run; root)
	@$(LIB)
	[[ -f tests/faults/run ]] || die "tests/faults/run not found"
	bash tests/faults/run
