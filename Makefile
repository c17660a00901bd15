# agentstream — every entry point sets itself up first, so each works on a fresh machine.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the bench's peers (Quix Streams) pin a confluent-kafka of their own: a venv of their own
PEERS := .venv-peers
PEERS_STAMP := $(PEERS)/.installed
PYTEST_ARGS ?=

.PHONY: help setup peers test lint unit integration demo bench soak clean kafka-up kafka-down

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

$(PEERS_STAMP): bench/peers.txt
	@test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS)/bin/python -m pip install --quiet -r bench/peers.txt
	@touch $(PEERS_STAMP)

peers: $(PEERS_STAMP) ## the bench peers' own venv (Quix Streams, bench/peers.txt)

setup: $(STAMP) ## venv + project with dev extras + Kafka jars (idempotent)
	$(BIN)/agentstream kafka fetch

lint: setup ## ruff + mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: setup lint ## the whole suite: unit + integration against a real broker and chdb
	$(BIN)/python -m pytest $(PYTEST_ARGS) || { rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc; }

unit: setup ## unit tests only
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

integration: setup ## integration tests only
	$(BIN)/python -m pytest -m integration $(PYTEST_ARGS)

demo: setup ## local broker + embedded ClickHouse + worker + simulated agents
	$(BIN)/agentstream demo

bench: setup ## throughput and latency, each beside a baseline measured in the same run
	@# the peers' venv needs the package index: without it the bench runs and says the peer skipped
	$(MAKE) --no-print-directory peers || echo "bench: the peers' venv could not be built; the Quix Streams peer is skipped"
	$(BIN)/python -m bench --chart bench-results/bench.png --peer-python $(PEERS)/bin/python
	@echo "sink insert latency during a long analyst query (its own process: one chdb per process)"
	$(BIN)/python -m bench._analyst

soak: setup ## fault-injection soak (120 s, every fault) against an independent truth
	$(BIN)/agentstream soak --duration 120

kafka-up: setup ## start the local broker
	$(BIN)/agentstream kafka up

kafka-down: ## stop the local broker
	$(BIN)/agentstream kafka down

clean: ## remove the venv and local state (broker data, chdb folder, spool)
	-$(BIN)/agentstream kafka down
	rm -rf $(VENV) $(PEERS) .local .mypy_cache .ruff_cache .pytest_cache
