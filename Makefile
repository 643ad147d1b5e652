# Concurrency Lab. `make compare` and `make test` bootstrap .venv themselves on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
APP_REQS := $(wildcard upstream/requirements.txt flask_app/requirements.txt django_app/requirements.txt fastapi_app/requirements.txt)
STAMP  := $(VENV)/.installed
GO     := $(shell command -v go 2>/dev/null)
NODE   := $(shell command -v node 2>/dev/null)
# Debian packages the lab drives: headless Chromium (+ chromedriver) for the browser tests,
# redis-server for seed 003's pub/sub experiment, and rails-puma's Rails, Puma and pg (RubyGems is
# not reachable from the lab's machines; Debian packages them). Installed once, with apt, when missing.
SYSTEM_PKGS  := chromium chromium-driver redis-server ruby-rails puma ruby-pg
SYSTEM_BINS  := chromium chromedriver redis-server puma
SYSTEM_STAMP := $(VENV)/.system

.PHONY: system-deps compare compare-claims compare-full capacity profile faults test lint unit go-test node-test report readme upstream-bench up clean screenshots \
	docker-lab docker-lab-stop

$(STAMP): pyproject.toml constraints.txt $(APP_REQS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt \
		$(foreach r,$(APP_REQS),-r $(r)) -e '.[dev]'
	touch $@

$(SYSTEM_STAMP): $(STAMP)
	@missing=""; for bin in $(SYSTEM_BINS); do command -v $$bin >/dev/null || missing="$$missing $$bin"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing with apt-get"; \
		sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			$$sudo apt-get install -y -qq --no-install-recommends $(SYSTEM_PKGS) >/dev/null; \
	fi
	touch $@

system-deps: $(SYSTEM_STAMP)

## The main job: the quick comparison of every target (users 1 and 100), table + results/latest/.
compare: $(STAMP) $(SYSTEM_STAMP)
	LAB_MAKE_TARGET=$@ $(BIN)/bench compare --quick

## The quick levels with every claim's cells and experiments (DB-bound workload, default go pool,
## bare variants, the pub/sub timelines and 100 streams): what docs/latest-run.json comes from.
compare-claims: $(STAMP) $(SYSTEM_STAMP)
	LAB_MAKE_TARGET=$@ $(BIN)/bench compare --quick --all-claims

## The full default sweep (users 1, 10, 50, 100, 200; 30 s each).
compare-full: $(STAMP) $(SYSTEM_STAMP)
	LAB_MAKE_TARGET=$@ $(BIN)/bench compare

## Each target's knee (users x2 until p95 > 1.5 x L1, errors, or a CPU limit) under the LLM-bound
## and the short-I/O workload: rps per core, MB per request in flight (bench/capacity.py).
capacity: $(STAMP) $(SYSTEM_STAMP)
	LAB_MAKE_TARGET=$@ $(BIN)/bench capacity

## Where the CPU goes: one cell (100 users) per target (TARGET="a,b") profiled in its window (py-spy, pprof or
## V8's profiler), each layer's share and CPU ms per request, a flame graph (bench/profile.py).
profile: $(STAMP) $(SYSTEM_STAMP)
	@test -n "$(TARGET)" || { echo "usage: make profile TARGET=fastapi-async"; exit 2; }
	LAB_MAKE_TARGET=$@ $(BIN)/bench profile $(TARGET)

## Faults under load (PostgreSQL, upstream, a worker, SIGTERM) on every target: docs/FAULTS.md.
## One run of each quick fault fills about 12 min for the 15 targets on 2 cores; REPEAT=3 judges
## every verdict over three runs (three times as long).
REPEAT ?= 1
faults: $(STAMP) $(SYSTEM_STAMP)
	LAB_MAKE_TARGET=$@ $(BIN)/bench faults --quick --repeat $(REPEAT)

## Every check: lint, go vet/test, unit tests, the contract suite against every target, model behaviour.
test: lint go-test node-test unit

lint: $(STAMP)
	$(BIN)/ruff check .

go-test:
ifeq ($(GO),)
	@echo "go not found: skipping go vet / go test (go-gin is skipped by the harness too)"
else
	cd go_app && go vet ./... && go test ./...
	cd bench/loadgen && go vet ./...
endif

node-test:
ifeq ($(NODE),)
	@echo "node not found: skipping node --test (the node targets are skipped by the harness too)"
else
	cd node_app && node --test
endif

# Docker is set up first (engine, compose plugin, base images; best effort: where it can't be, the
# live Docker tests skip with the reason), and a dockerd started for the tests is stopped after them.
unit: $(STAMP) $(SYSTEM_STAMP)
	@if docker info >/dev/null 2>&1; then engine_was_up=yes; else engine_was_up=; fi; \
	$(BIN)/bench docker-lab --best-effort; \
	$(BIN)/pytest; status=$$?; \
	if [ -z "$$engine_was_up" ]; then $(BIN)/bench docker-lab --stop; fi; \
	exit $$status

## The README's pictures of the Comparison tab, from the live test's comparison (flask-sync,
## fastapi-async and go-gin at 1 and 50 users from the Compare form): docs/img/comparison-*.png.
screenshots: $(STAMP) $(SYSTEM_STAMP)
	LAB_SCREENSHOTS=1 $(BIN)/pytest tests/ui/test_comparison_tab.py -k compare_form

report: $(STAMP)
	$(BIN)/bench report results/latest

## Put results/latest's headline table and claims (snapshot in docs/latest-run.json) and the
## upstream-bench figures (docs/upstream-bench.json) into README.md.
readme: $(STAMP)
	$(BIN)/bench readme results/latest

## The mock upstream alone on one core; writes docs/upstream-bench.json (then `make readme`).
upstream-bench: $(STAMP)
	LAB_MAKE_TARGET=$@ $(BIN)/bench upstream-bench

## Make Docker usable here (engine, Compose v2, local stand-ins for base images no registry serves),
## each step only when missing; then e.g. `docker compose --profile fastapi up --build`.
docker-lab: $(STAMP)
	$(BIN)/bench docker-lab

## Stop the Docker daemon that docker-lab started (never one it did not start).
docker-lab-stop: $(STAMP)
	$(BIN)/bench docker-lab --stop

## The native interactive path: infra + targets until Ctrl-C, e.g. make up TARGET="fastapi-async go-gin";
## it prints the `locust` command for the web UI (http://127.0.0.1:8089).
up: $(STAMP)
	$(BIN)/bench up $(TARGET)

clean:
	rm -rf $(VENV) go_app/bin bench/loadgen/bin
