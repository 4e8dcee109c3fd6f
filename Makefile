# dbwarden: the two commands are `make demo` and `make test`; both install what they need.
SHELL := bash
CARGO ?= cargo

.PHONY: all deps tools build lint test e2e demo bench fuzz crds clean-tools

all: build

## deps: distribution and Python packages (PostgreSQL, pgbouncer, psycopg)
deps:
	@bash hack/deps.sh

## tools: kube-apiserver, kubectl and helm built from Go modules into .tools/bin
tools:
	@bash hack/tools.sh >/dev/null

build:
	$(CARGO) build --workspace --all-targets

## lint: formatting, clippy, and generated files up to date, as CI runs them
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) run --quiet -p dbwarden-crds --bin crdgen -- --check

## crds: regenerate crds/*.yaml and the reference in docs/resources.md from the Rust types
crds:
	$(CARGO) run --quiet -p dbwarden-crds --bin crdgen

## test: every test, on real PostgreSQL and a real control plane
test: deps tools
	$(CARGO) test --workspace

# The story's packages, selected together so that cargo resolves one set of dependency features
# for the demo, the story test and the binaries the story builds for itself (see
# e2e/src/support/binaries.rs): otherwise each builds its own copy of most dependencies.
STORY_PACKAGES := -p dbwarden-sidecar -p dbwarden-operator -p dbwarden-e2e
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)

## e2e: only the end-to-end story (e2e/), narrated step by step
e2e: deps tools
	$(CARGO) test $(STORY_PACKAGES) --test story -- --nocapture

## demo: the end-to-end story narrated step by step, then the environment stays up to try (Ctrl-C stops it)
demo: deps tools
	$(CARGO) build --quiet $(STORY_PACKAGES) --bins
	exec $(TARGET_DIR)/debug/dbwarden-demo

## bench: pgbench straight to PostgreSQL, through pgbouncer and through the sidecar, as ratios
bench: deps
	$(CARGO) bench -p dbwarden-sidecar --bench pgbench

## fuzz: the protocol decoder and the quick shape key under cargo-fuzz, FUZZ_SECONDS each (needs nightly and cargo-fuzz)
fuzz:
	cd sidecar/fuzz && cargo +nightly fuzz run decode -- -max_total_time=$${FUZZ_SECONDS:-60}
	cd sidecar/fuzz && cargo +nightly fuzz run shape -- -dict=shape.dict -max_total_time=$${FUZZ_SECONDS:-60}

clean-tools:
	rm -rf .tools
