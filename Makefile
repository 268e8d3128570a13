# Set-up is two commands: `make run` and `make test`. Both create/update .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	@touch $@

# `make run`: a local verifier on :8081 trusting this machine's simulated TD (only used when
# there is no TDX), and `cllm serve` on :8080 with the embedded model. Ctrl-C stops both.
RUN_STATE ?= .cllm-state
run: $(STAMP)
	@$(BIN)/cllm tee simulated-root --state-dir $(RUN_STATE) --json > /dev/null
	@$(BIN)/cllm verifier serve --port 8081 --state-dir $(RUN_STATE) \
		--trust-simulated-root $(RUN_STATE)/simulated/root-ca.pem & VERIFIER=$$!; \
	trap 'kill $$VERIFIER 2>/dev/null' EXIT; \
	$(BIN)/cllm serve --port 8080 --state-dir $(RUN_STATE) --verifier http://127.0.0.1:8081

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy --strict src/

test: lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/verify.py
	$(BIN)/python bench/measure.py
	$(BIN)/python bench/verifier.py
	$(BIN)/python bench/serve.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
