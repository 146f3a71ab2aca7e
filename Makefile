# The familiar `make` targets of the old setup, as thin wrappers:
#   up/test       -> scripts/up.sh, scripts/test.sh
#   preview/down  -> scripts/up.sh with PULUMI_COMMAND=preview/destroy (same backend, passphrase)
#   the rest      -> mirrorctl (python -m mirrorctl; docs/operator-commands.md)
# Variables: STACK (dev), ARGS (extra arguments), REPO, TAG/REF, SERVICE, APPLY=1, FOLLOW=1,
# MIRRORCTL_FLAGS (global mirrorctl flags, e.g. --url URL --ca FILE without a Pulumi CLI).

SHELL := /bin/bash
.DEFAULT_GOAL := help

STACK ?= dev
ARGS ?=
REPO ?=
TAG ?= latest
REF ?= $(TAG)
SERVICE ?= registry
APPLY ?=
FOLLOW ?=
MIRRORCTL_FLAGS ?=
VENV ?= .venv
PYTHON ?= $(VENV)/bin/python
PULUMI_STATE_DIR ?= $(CURDIR)/.pulumi-state

MIRRORCTL = $(strip $(PYTHON) -m mirrorctl --stack $(STACK) $(MIRRORCTL_FLAGS))

.PHONY: help up preview down test status catalog tags manifest metrics verify-certs gc logs

help: ## Show the targets
	@echo "registry-mirror: make TARGET [STACK=$(STACK)] [VAR=value ...]"
	@grep -E '^[a-zA-Z%_-]+:.*## ' $(MAKEFILE_LIST) \
	  | sed -E 's/^([^:]+):.*## (.*)$$/  \1\t\2/' | expand -t 16

up: ## Create or update the stack (scripts/up.sh; ARGS=--yes to skip the prompt)
	STACK=$(STACK) scripts/up.sh $(ARGS)

preview: ## Show what `up` would change
	PULUMI_COMMAND=preview STACK=$(STACK) scripts/up.sh $(ARGS)

down: ## Destroy the stack's containers (volumes kept when keepDataOnDestroy=true)
	PULUMI_COMMAND=destroy STACK=$(STACK) scripts/up.sh $(ARGS)

test: ## Lint, type-check and run every test (scripts/test.sh; ARGS=pytest arguments)
	scripts/test.sh $(ARGS)

status: | $(PYTHON) ## Every service URL and its health, and Prometheus's targets
	$(MIRRORCTL) status $(ARGS)

catalog: | $(PYTHON) ## Repositories the mirror has cached
	$(MIRRORCTL) catalog $(ARGS)

tags: | $(PYTHON) ## Tags of a repository: REPO=library/alpine
	@[ -n "$(REPO)" ] || { echo "usage: make tags REPO=library/alpine" >&2; exit 2; }
	$(MIRRORCTL) tags $(REPO) $(ARGS)

manifest: | $(PYTHON) ## A manifest: REPO=library/alpine [TAG=latest|REF=sha256:...]
	@[ -n "$(REPO)" ] || { echo "usage: make manifest REPO=library/alpine [TAG=latest|REF=sha256:...]" >&2; exit 2; }
	$(MIRRORCTL) manifest $(REPO) $(REF) $(ARGS)

metrics: | $(PYTHON) ## Cache hit ratio and bytes pulled upstream vs served (Prometheus)
	$(MIRRORCTL) metrics $(ARGS)

verify-certs: | $(PYTHON) ## TLS chain, SANs and days to expiry of the registry
	$(MIRRORCTL) verify-certs $(ARGS)

gc: | $(PYTHON) ## Registry garbage collection: a dry run; APPLY=1 deletes (stops the registry)
	$(MIRRORCTL) gc $(if $(APPLY),--apply) $(ARGS)

logs: | $(PYTHON) ## Logs of a service: SERVICE=registry|prometheus|grafana|jaeger|loki|alloy|blackbox [FOLLOW=1]
	$(MIRRORCTL) logs $(SERVICE) $(if $(FOLLOW),--follow) $(ARGS)

logs-%: | $(PYTHON) ## Logs of one service, e.g. make logs-loki
	$(MIRRORCTL) logs $* $(if $(FOLLOW),--follow) $(ARGS)

# The operator commands run from the dev venv (typer, rich, httpx: requirements-dev.txt),
# made here the way scripts/test.sh makes it when it is missing.
$(PYTHON):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	cp requirements-dev.txt $(VENV)/.requirements-dev.txt
	cp requirements.txt $(VENV)/.requirements.txt
