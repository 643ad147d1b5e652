# Concurrency Lab. `make compare` and `make test` bootstrap .venv themselves on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
APP_REQS := $(wildcard upstream/requirements.txt flask_app/requirements.txt django_app/requirements.txt fastapi_app/requirements.txt)
STAMP  := $(VENV)/.installed
GO     := $(shell command -v go 2>/dev/null)
# Debian packages the lab drives: headless Chromium (+ chromedriver) for the browser tests,
# redis-server for seed 003's pub/sub experiment. Installed once, with apt, when missing.
SYSTEM_PKGS  := chromium chromium-driver redis-server
SYSTEM_BINS  := chromium chromedriver redis-server
SYSTEM_STAMP := $(VENV)/.system

.PHONY: system-deps compare compare-full test lint unit go-test report readme upstream-bench up clean

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
	$(BIN)/bench compare --quick

## The full default sweep (users 1, 10, 50, 100, 200; 30 s each).
compare-full: $(STAMP) $(SYSTEM_STAMP)
	$(BIN)/bench compare

## Every check: lint, go vet/test, unit tests, the contract suite against every target, model behaviour.
test: lint go-test unit

lint: $(STAMP)
	$(BIN)/ruff check .

go-test:
ifeq ($(GO),)
	@echo "go not found: skipping go vet / go test (go-gin is skipped by the harness too)"
else
	cd go_app && go vet ./... && go test ./...
	cd bench/loadgen && go vet ./...
endif

unit: $(STAMP) $(SYSTEM_STAMP)
	$(BIN)/pytest

report: $(STAMP)
	$(BIN)/bench report results/latest

## Put results/latest's headline table and claims into README.md (snapshot in docs/latest-run.json).
readme: $(STAMP)
	$(BIN)/bench readme results/latest

upstream-bench: $(STAMP)
	$(BIN)/bench upstream-bench

## The native interactive path: infra + targets until Ctrl-C, e.g. make up TARGET="fastapi-async go-gin";
## it prints the `locust` command for the web UI (http://127.0.0.1:8089).
up: $(STAMP)
	$(BIN)/bench up $(TARGET)

clean:
	rm -rf $(VENV) go_app/bin bench/loadgen/bin
