# Two commands do everything on a fresh machine:
#   make demo   -> creates .venv, installs pinned dependencies + the zoo, runs `zoo demo`
#   make test   -> same venv, runs the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install bench lint clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/zoo demo

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

# The suite (torch: `$(BIN)/pip install -e .[torch]`, or BENCH_ARGS="... --no-torch"), then
# its tables into benchmarks/README.md. Run it on a quiet machine.
BENCH_ARGS ?= --sections peak,recurrent,models,threads
BENCH_OUTPUT ?= benchmarks/results.json

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS) --output $(BENCH_OUTPUT)
	$(BIN)/python -m benchmarks.report $(BENCH_OUTPUT)

lint: $(STAMP)
	$(BIN)/ruff check zoo tests recipes

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
