# Concurrency Lab. `make compare` and `make test` bootstrap .venv themselves on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
APP_REQS := $(wildcard upstream/requirements.txt flask_app/requirements.txt django_app/requirements.txt fastapi_app/requirements.txt)
STAMP  := $(VENV)/.installed
GO     := $(shell command -v go 2>/dev/null)

.PHONY: compare compare-full test lint unit go-test report upstream-bench clean

$(STAMP): pyproject.toml constraints.txt $(APP_REQS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt \
		$(foreach r,$(APP_REQS),-r $(r)) -e '.[dev]'
	touch $@

## The main job: the quick comparison of every target (users 1 and 100), table + results/latest/.
compare: $(STAMP)
	$(BIN)/bench compare --quick

## The full default sweep (users 1, 10, 50, 100, 200; 30 s each).
compare-full: $(STAMP)
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

unit: $(STAMP)
	$(BIN)/pytest

report: $(STAMP)
	$(BIN)/bench report results/latest

upstream-bench: $(STAMP)
	$(BIN)/bench upstream-bench

clean:
	rm -rf $(VENV) go_app/bin bench/loadgen/bin
