# The two commands: `make demo` and `make test`. Both build .venv from the lock first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
LOCK   := requirements/dev.lock
STAMP  := $(VENV)/.installed
PORT   ?= 8000
HOST   ?= 127.0.0.1

export PYTHONDONTWRITEBYTECODE := 1

.PHONY: demo screenshots test lint docs bench bench-scale venv clean

venv: $(STAMP)

$(STAMP): $(LOCK) pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# make demo [PORT=8123] [BROKER=redis://127.0.0.1:6379/0 WORKERS=2]
# With WORKERS, the workers' metrics meet in a fresh PROMETHEUS_MULTIPROC_DIR
# (docs/operations.md), unless one is set already.
demo: $(STAMP)
	$(BIN)/python demo/manage.py migrate --noinput
	$(BIN)/python demo/manage.py demo_admin --url http://$(HOST):$(PORT)/admin/
	$(if $(BROKER),TIDINGS_BROKER=$(BROKER),) WEB_CONCURRENCY=$(or $(WORKERS),1) \
	$(if $(WORKERS),PROMETHEUS_MULTIPROC_DIR=$${PROMETHEUS_MULTIPROC_DIR:-$$(mktemp -d -t tidings-metrics.XXXXXX)},) \
	$(BIN)/python -m uvicorn demo.asgi:application --host $(HOST) --port $(PORT) --app-dir . \
	  --http tidings.serve:HttpProtocol --ws tidings.serve:WebSocketProtocol

# the pictures README.md shows: every demo page in Chromium, saved to docs/screenshots/
screenshots: $(STAMP)
	$(BIN)/python -m demo.screenshots

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests demo bench
	$(BIN)/mypy

# the documentation (mkdocs.yml) into site/, every warning an error
docs: $(STAMP)
	$(BIN)/python -m mkdocs build --strict

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)
	$(BIN)/python -m bench.brokers

# make bench-scale [N=5000] [SCALE_ARGS="--workers 3 --loadgens 4"]: 50,000 idle
# subscribers on 3 workers + Redis, one broadcast, a reconnect storm (docs/performance.md)
bench-scale: $(STAMP)
	$(BIN)/python -m bench.scale $(if $(N),--n $(N),) $(SCALE_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache site
