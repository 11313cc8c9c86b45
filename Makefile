# Two commands matter on a fresh machine:
#   make devnet   runs a whole local subnet (installs libtorch on the way)
#   make test     runs every check CI runs (fmt, clippy, tests)
SHELL := /bin/bash
ENV := source scripts/env.sh &&
DEVNET_ARGS ?=

.PHONY: setup devnet test fmt clippy unit bench crds

setup:
	./scripts/setup.sh

devnet: setup
	$(ENV) cargo run -p worker -- devnet $(DEVNET_ARGS)

fmt:
	cargo fmt --all --check

clippy: setup
	$(ENV) cargo clippy --workspace --all-targets -- -D warnings

unit: setup
	$(ENV) cargo test --workspace

test: fmt clippy unit

crds:
	cargo run -p subnet-operator --bin crdgen
