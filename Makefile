# The two commands of the README: `make demo` and `make test`. Both create .venv when it is
# missing, from nothing but Python 3.11 and the package registries.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.clinotel-installed
COMPONENTS := -e "./instrumentation[sdk,openfeature]" -e ./model -e ./collector -e ./dashboards -e ./alerts

.PHONY: demo test lint bench docs constraints clean

$(STAMP): pyproject.toml instrumentation/pyproject.toml model/pyproject.toml collector/pyproject.toml dashboards/pyproject.toml alerts/pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet -c constraints.txt $(COMPONENTS) -e . --group dev
	touch $@

# Each `make demo` starts over in clinotel-demo/ (--force replaces only a store an earlier demo
# run created there); DEMO_ARGS passes other flags: make demo DEMO_ARGS="--workflows 5000".
DEMO_ARGS ?=
demo: $(STAMP)
	$(BIN)/clinotel demo --force $(DEMO_ARGS)

# The suite on two workers (the machines it runs on have two cores, and most tests wait on processes
# and sockets), then the tests that measure memory, with nothing beside them.
test: $(STAMP)
	scripts/system-packages.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder -m "not alone"
	$(BIN)/python -m pytest -m alone
	$(BIN)/python scripts/bench_smoke.py

lint: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

docs: $(STAMP)
	$(BIN)/clinotel semconv docs --out docs/semantic-conventions.md

bench: $(STAMP)
	for b in benchmarks/[!_]*.py; do $(BIN)/python $$b --json benchmarks/results/$$(basename $$b .py).json || exit 1; done

constraints: $(STAMP)
	{ echo "# Versions the README's commands install (pip constraints). Regenerate with: make constraints"; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^clinotel'; } > constraints.txt

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
