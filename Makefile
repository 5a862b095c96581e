# hello-stateful: build it, test it, ship it to a Kubernetes cluster. Plain `make` lists targets.
#
# Usage: make <target> [VARIABLE=value ...], for example
#   make run                                  one replica on 127.0.0.1:8000, data in .data/hello
#   make test                                 cargo tests, then the manifest and Makefile checks
#   make deploy                               kind, minikube or k3d: found from the kubectl context
#   make deploy REGISTRY=ghcr.io/you          any cluster that can pull from that registry
#   make deploy INGRESS=gateway GATEWAY=eg GATEWAY_NAMESPACE=envoy-gateway-system
#   make deploy MONITORING=podmonitor         also a PodMonitor for the Prometheus Operator
#   make scale REPLICAS=5                     then `make scale REPLICAS=3`: the volumes stay
#   make build CARGO="cargo zigbuild"         macOS: link the Linux musl binary with zig
#   make build RUST_TARGET=aarch64-unknown-linux-musl   the arm64 binary alone (`make image`: both)
#   make test SCHEMAS_DIR=path/to/crds        also check the custom kinds against their CRDs

# Image name, without registry or tag.
IMAGE ?= hello-stateful
# Empty: <version>-<12 hex digits of a sha256 over both binaries and the Dockerfile>, so an
# unchanged build keeps its tag (pods are not restarted) and a changed one rolls out. The images
# are <tag>-amd64 and <tag>-arm64; <tag> names their manifest list (podman, a registry) and, in
# the nodes of kind, minikube or k3d, the image of their platform.
TAG ?=
# Registry prefix to push to (registry.example.com/you); empty: load into kind/minikube/k3d.
REGISTRY ?=
NAMESPACE ?= default
# For `make scale`; `make deploy` uses it only when given, else keeps the running count (or 3).
REPLICAS ?= 3
# docker or podman; empty: docker if its engine answers, else podman, whichever is installed.
CONTAINER_TOOL ?=
CARGO ?= cargo
# What `make build` builds: x86_64-unknown-linux-musl, or aarch64-unknown-linux-musl (linked with
# rustup's rust-lld: no cross toolchain). `make image` builds both, whatever this says.
RUST_TARGET ?= x86_64-unknown-linux-musl
# nginx, traefik, gateway or none; auto: traefik on k3s and k3d, nginx elsewhere.
INGRESS ?= auto
# none, or podmonitor: also a PodMonitor, so the Prometheus Operator's Prometheus scrapes each
# pod's /metrics (the cluster must have the operator's CRDs; `make deploy` checks).
MONITORING ?= none
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
# Folder with the CustomResourceDefinitions (YAML) of the custom kinds the manifests may use,
# Traefik's Middleware, the Gateway API's HTTPRoute and the Prometheus Operator's PodMonitor,
# for `make test-manifests`; a relative path is taken from the repository's root. Empty: that
# one check is skipped.
SCHEMAS_DIR ?=
# Build output: cargo's, the image's build context and the Python tools' virtual environment.
CARGO_TARGET_DIR ?= $(CURDIR)/target

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
# A recipe's lines run as one bash script, so the functions of LIB carry across them.
.ONESHELL:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

# The images' build contexts, one directory per platform holding only its binary (no
# .dockerignore to keep right).
IMAGE_CONTEXT := $(CARGO_TARGET_DIR)/image
# The Python tools of tests/requirements.txt (kubernetes-validate, yamllint, hadolint, ...).
VENV := $(abspath $(CARGO_TARGET_DIR))/venv
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
# 1 MiB: the budget for each stripped binary and each image; `make build` and `make image` fail
# past it.
SIZE_BUDGET := 1048576
APP_LABEL := app.kubernetes.io/name=hello-stateful
# `make deploy` keeps the running replica count unless REPLICAS is given on the command line.
REPLICAS_GIVEN := $(filter command line environment,$(origin REPLICAS))
# The shell functions the recipes share with the scripts in k8s/scripts/, which do the rest.
LIB := . k8s/scripts/lib.sh

export IMAGE TAG REGISTRY NAMESPACE REPLICAS CONTAINER_TOOL CARGO INGRESS GATEWAY GATEWAY_NAMESPACE \
  STORAGE_CLASS INGRESS_HOST ROLLOUT_TIMEOUT K8S_VERSIONS SCHEMAS_DIR CARGO_TARGET_DIR RUST_TARGET \
  MONITORING IMAGE_CONTEXT VERSION SIZE_BUDGET APP_LABEL REPLICAS_GIVEN

##@ Develop

.PHONY: help
help: ## Show the targets and the main variables
	@awk 'BEGIN { FS = ":.*## " } /^##@ / { printf "\n%s\n", substr($$0, 5) }
	  /^[a-zA-Z0-9_-]+:.*## / { printf "  %-16s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
	printf '\nVariables (make TARGET NAME=value): IMAGE=%s TAG=%s REGISTRY=%s NAMESPACE=%s\n' \
	  '$(IMAGE)' '$(or $(TAG),<from content>)' '$(REGISTRY)' '$(NAMESPACE)'
	printf '  REPLICAS=%s INGRESS=%s MONITORING=%s CONTAINER_TOOL=%s CARGO=%s RUST_TARGET=%s\n' \
	  '$(REPLICAS)' '$(INGRESS)' '$(MONITORING)' '$(or $(CONTAINER_TOOL),<docker or podman>)' \
	  '$(CARGO)' '$(RUST_TARGET)'
	printf '  STORAGE_CLASS=%s\n' '$(or $(STORAGE_CLASS),<cluster default>)'
	echo 'See the comments at the top of the Makefile for each one.'

.PHONY: build
build: ## Build the stripped static musl release binary for RUST_TARGET (adds the rustup target if missing)
	@bash k8s/scripts/build.sh

.PHONY: test
test: test-cargo test-manifests test-makefile ## Run every test: cargo tests, manifest checks, Makefile checks

.PHONY: test-cargo
test-cargo: venv ## Run the Rust unit and integration tests (REDbot from target/venv)
	@$(LIB); need_cargo
	PATH="$(VENV)/bin:$$PATH" run $(CARGO) test --locked

.PHONY: test-manifests
test-manifests: venv ## Validate the rendered manifests (schemas, policy, yamllint) and lint the Dockerfile
	@PATH="$(VENV)/bin:$$PATH" bash tests/manifests/run

.PHONY: test-makefile
test-makefile: ## Run the cluster targets against stand-in kubectl/kind/minikube/k3d/docker/podman
	@bash tests/makefile/run

.PHONY: lint
lint: venv ## rustfmt, clippy (warnings are errors), hadolint and yamllint
	@$(LIB); need_cargo; run $(CARGO) fmt --all --check; run $(CARGO) clippy --locked --all-targets -- -D warnings
	PATH="$(VENV)/bin:$$PATH"; run hadolint Dockerfile; run yamllint --strict -c tests/manifests/yamllint.yaml k8s

.PHONY: run
run: ## Serve one replica on 127.0.0.1:8000 with its data in .data/hello
	@$(LIB); need_cargo; mkdir -p "$(CURDIR)/.data"
	note "serving on http://127.0.0.1:8000 (data: .data/hello); try: curl 127.0.0.1:8000/store -d hi"
	DATA_FILE="$(CURDIR)/.data/hello" LISTEN_ADDR=127.0.0.1:8000 RUST_LOG="$${RUST_LOG:-info}" \
	  $(CARGO) run --release --locked

.PHONY: clean
clean: ## Remove build output (keeps .data/, the local data of `make run`)
	@$(LIB); rm -rf "$(CURDIR)"/k8s/.overlay.*
	if command -v $(firstword $(CARGO)) >/dev/null 2>&1; then run $(CARGO) clean
	else run rm -rf "$(CARGO_TARGET_DIR)"; fi

##@ Image

.PHONY: image
image: ## Build both binaries, the linux/amd64 and linux/arm64 images (podman: and their manifest list)
	@bash k8s/scripts/image.sh

.PHONY: load
load: image ## Load the nodes' platform's image into kind, minikube or k3d (REGISTRY= pushes instead)
	@bash k8s/scripts/publish.sh load

.PHONY: push
push: image ## Push both images and their manifest list to REGISTRY
	@bash k8s/scripts/publish.sh push

##@ Cluster

.PHONY: manifests
manifests: ## Print the manifests `make deploy` would apply (same INGRESS, MONITORING, NAMESPACE, TAG, ...)
	@bash k8s/scripts/manifests.sh

.PHONY: deploy
deploy: image ## Build the images, load the nodes' one or push all, apply k8s/, wait for the rollout
	@bash k8s/scripts/deploy.sh

.PHONY: undeploy
undeploy: ## Delete hello-stateful from the cluster but keep its volumes (PVCs)
	@bash k8s/scripts/undeploy.sh

.PHONY: purge
purge: undeploy ## Delete hello-stateful and its volumes: all stored data is lost
	@$(LIB); need_kubectl
	note "deleting the volumes (PVCs) of hello-stateful in namespace $(NAMESPACE): their data is gone for good"
	run kubectl delete pvc -n "$(NAMESPACE)" -l "$(APP_LABEL)" --ignore-not-found --wait=true

.PHONY: status
status: ## Show the StatefulSet, pods, volumes, Service, Ingress and PDB
	@$(LIB); need_kubectl
	run kubectl get statefulsets.apps,pods,pvc,services,ingresses.networking.k8s.io,poddisruptionbudgets.policy \
	  -n "$(NAMESPACE)" -l "$(APP_LABEL)" -o wide

.PHONY: logs
logs: ## Print the last LOG_TAIL log lines of every replica
	@$(LIB); need_kubectl
	run kubectl logs -n "$(NAMESPACE)" -l "$(APP_LABEL)" --all-containers --prefix --timestamps \
	  --tail="$(LOG_TAIL)" --max-log-requests=100

.PHONY: scale
scale: ## Scale to REPLICAS pods (volumes of removed pods are kept for the next scale-up)
	@bash k8s/scripts/scale.sh

.PHONY: smoke
smoke: ## Store and read back through `kubectl proxy` and the ingress; fails loudly on a wrong answer
	@bash k8s/scripts/smoke.sh

##@ Other checks (scripts of their own)

.PHONY: e2e
e2e: ## The StatefulSet emulated: podman pods, dnsmasq DNS, nginx ingress (tests/e2e/run; root)
	@$(LIB); suite tests/e2e/run

.PHONY: test-arm64
test-arm64: ## The arm64 binary run under qemu; both images and their list built by podman (tests/arm64/run)
	@$(LIB); suite tests/arm64/run

.PHONY: bench
bench: ## Throughput and memory measurements (benches/run)
	@$(LIB); suite benches/run

.PHONY: faults
faults: ## Fault injection: kill -9, full disk, dead DNS, SIGTERM, hostile clients (tests/faults/run; root)
	@$(LIB); suite tests/faults/run

##@ Dependencies

.PHONY: venv
venv: $(VENV)/requirements.txt ## The Python tools of tests/requirements.txt, in a virtual environment under target/

# Made once, and again from scratch whenever tests/requirements.txt is newer than the copy of it
# that marks the environment complete.
$(VENV)/requirements.txt: tests/requirements.txt
	@$(LIB); make_venv "$(VENV)" $<
