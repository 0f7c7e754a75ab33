# The README's commands. Each target creates .venv when missing and installs
# the package with everything it needs, so it works on a machine that has
# nothing but Python 3.11+.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL := 2
PYTEST := $(BIN)/python -m pytest -p no:cacheprovider --durations=15

.PHONY: install demo test test-fast test-slow test-backends lint bench clean

# tensorflow-serving-api's metadata requires the full `tensorflow` wheel;
# tensorflow-cpu already provides TensorFlow, so its protos install alone.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "torch==2.13.0" -e ".[dev,jax]"
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps "tensorflow-serving-api==2.21.0"
	touch $(STAMP)

install: $(STAMP)

## Main job: census income -> train DCN on both tasks -> test AUC -> export to
## saved_models/census_dcn/<version>/ -> verify it in a fresh process -> PNG curves.
demo: $(STAMP)
	$(BIN)/keras-recsys demo --model dcn

## Whole suite on the TensorFlow backend, then the model tests on JAX and PyTorch.
test: $(STAMP)
	$(PYTEST) -m "not slow" -q
	$(MAKE) --no-print-directory test-backends

test-backends: $(STAMP)
	KERAS_BACKEND=jax $(PYTEST) -m "multibackend and not slow" -q
	KERAS_BACKEND=torch $(PYTEST) -m "multibackend and not slow" -q

test-slow: $(STAMP)
	$(PYTEST) -m slow -q

lint: $(STAMP)
	$(BIN)/ruff check keras_recsys keras_recsys_cli tests benchmarks recipes
	$(BIN)/ruff format --check keras_recsys keras_recsys_cli tests benchmarks recipes

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_ranking.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
