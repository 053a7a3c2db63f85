# The project's verbs. CI runs `make test`, exactly as a user does.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CLUSTER := tests/e2e/cluster/cluster.sh

.PHONY: help install tools cluster-up cluster-down test unit integration e2e chaos lint crds demo bench clean image e2e-node

help: ## list the verbs
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

install: $(BIN)/.installed ## create .venv with the project and its test tools

tools: ## build (or reuse) etcd, kube-*, kubectl, kwok, helm, promtool in the cache folder
	@tests/e2e/cluster/build-binaries.sh >/dev/null

cluster-up: tools ## start the local cluster (prints the env to use it)
	@$(CLUSTER) up

cluster-down: ## stop the local cluster
	@$(CLUSTER) down

test: install tools ## every test: unit, integration (real helm/git/promtool) and e2e (starts the local cluster)
	@export RV_BIN_DIR=$$(tests/e2e/cluster/build-binaries.sh) && $(BIN)/pytest

unit: install ## fast tests of the pure core
	@$(BIN)/pytest -q tests/unit --hypothesis-profile=dev

integration: install tools ## tests with real helm, git, promtool and lua, no cluster
	@export RV_BIN_DIR=$$(tests/e2e/cluster/build-binaries.sh) && $(BIN)/pytest tests/integration

e2e: install tools ## the e2e suite on the local cluster (starts it, or uses RV_E2E_KUBECONFIG)
	@export RV_BIN_DIR=$$(tests/e2e/cluster/build-binaries.sh) && $(BIN)/pytest tests/e2e

chaos: install tools ## the chaos and fault e2e tests (kill loop, control-plane outage, frozen API connections, hanging remotes, 200 at once), printing their figures
	@export RV_BIN_DIR=$$(tests/e2e/cluster/build-binaries.sh) && $(BIN)/pytest -s -p no:cacheprovider tests/e2e/test_chaos.py tests/e2e/test_faults.py

lint: install ## ruff, mypy, the import contract (.importlinter) and the CRD drift check
	@$(BIN)/ruff check operator tests bench demo harness
	@$(BIN)/ruff format --check operator tests bench demo harness
	@$(BIN)/mypy
	@$(BIN)/lint-imports --no-cache
	@$(BIN)/pytest -q tests/unit/test_crd.py

image: ## build the operator's image from the Dockerfile (docker, else buildah) into build/image/oci; prints its size
	@deploy/image/build.sh

e2e-node: install tools ## the chart's pod on a real kubelet + containerd node joined to the local cluster (root)
	@export RV_BIN_DIR=$$(tests/e2e/cluster/build-binaries.sh) && $(BIN)/pytest tests/node

crds: install ## regenerate the CRD from the API models
	@$(BIN)/rollback-verifier crds --write deploy/crds --write deploy/chart/crds

demo: install tools ## the main job: a real rollback on the local cluster, verified
	@export RV_BIN_DIR=$$(tests/e2e/cluster/build-binaries.sh) && $(BIN)/python -m demo

bench: install tools ## benchmarks on the local cluster (figures go in the README)
	@export RV_BIN_DIR=$$(tests/e2e/cluster/build-binaries.sh) && $(BIN)/python -m bench

clean: cluster-down ## stop the cluster and remove the virtualenv
	rm -rf $(VENV)
