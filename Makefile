# Set-up is two commands: `make run` and `make test`. Both create/update .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean ui chromium

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev,server,verifier,proxy]"
	@touch $@

# The web UI: ui/ is an npm project (exact versions in its lock file) that builds into the
# package, where `cllm serve` measures it as `cllm.ui` and serves it at /. Rebuilt only when its
# sources or lock change; index.html, written last by the build, is the stamp.
UI_OUT := src/cllm/server/static/index.html
UI_DEPS := ui/node_modules/.cllm-installed
UI_SRC := $(shell find ui/src -type f 2>/dev/null) ui/build.mjs

$(UI_DEPS): ui/package.json ui/package-lock.json
	cd ui && npm ci --no-audit --no-fund --prefer-offline
	@touch $@

$(UI_OUT): $(UI_DEPS) $(UI_SRC)
	cd ui && npm run --silent build

ui: $(UI_OUT)

# Browser tests drive Debian's chromium (never a browser downloaded by a test tool).
chromium:
	@command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

# `make run`: a local verifier on :8081 trusting this machine's simulated TD (only used when
# there is no TDX), and `cllm serve` on :8080 with the embedded model. Ctrl-C stops both.
# It also plays the publisher: a local Ed25519 key (created once) signs a release manifest of
# exactly what it starts (`cllm serve --print-config`, then `cllm release create`), and the
# verifier's policy `local` names that release, so verdicts can be pinned (docs/release.md).
# cllm serve refuses to run bytecode from disk: a fresh, never written cache prefix per run.
# With CLLM_GPU_BACKEND=simulated the server attests the state directory's simulated GPU in every
# attestation, and the verifier trusts that GPU's roots as it trusts the simulated TD's
# (docs/gpu.md); without it the GPU backend is auto (no NVIDIA GPU: none, and it says so).
RUN_STATE ?= .cllm-state
SERVE_ARGS := --port 8080 --state-dir $(RUN_STATE) --verifier http://127.0.0.1:8081
export CLLM_GPU_BACKEND
GPU_TRUST = $(if $(filter simulated,$(CLLM_GPU_BACKEND)),--trust-simulated-gpu-root $(RUN_STATE)/simulated-gpu-root.pem)
run: $(STAMP) $(UI_OUT)
	@$(BIN)/cllm tee simulated-root --state-dir $(RUN_STATE) --json > /dev/null
	@if [ "$(CLLM_GPU_BACKEND)" = simulated ]; then $(BIN)/cllm gpu simulated-root \
		--state-dir $(RUN_STATE) > $(RUN_STATE)/simulated-gpu-root.pem; fi
	@test -f $(RUN_STATE)/publisher.pem || $(BIN)/cllm release keygen \
		--out $(RUN_STATE)/publisher.pem --public-out $(RUN_STATE)/publisher.pub.pem
	@mkdir -p $(RUN_STATE)/policies
	@printf '[release]\nmanifest = "../release.json"\npublisher_key = "../publisher.pub.pem"\n' \
		> $(RUN_STATE)/policies/local.toml
	@export PYTHONDONTWRITEBYTECODE=1 PYTHONPYCACHEPREFIX=$$(mktemp -d)/pycache; \
	$(BIN)/cllm serve $(SERVE_ARGS) --print-config > $(RUN_STATE)/serve-config.json && \
	$(BIN)/cllm release create --out $(RUN_STATE)/release.json --key $(RUN_STATE)/publisher.pem \
		--name cllm-local --config $(RUN_STATE)/serve-config.json --ui src/cllm/server/static && \
	{ $(BIN)/cllm verifier serve --port 8081 --state-dir $(RUN_STATE) \
		--policy-dir $(RUN_STATE)/policies \
		--trust-simulated-root $(RUN_STATE)/simulated/root-ca.pem $(GPU_TRUST) & VERIFIER=$$!; \
	trap 'kill $$VERIFIER 2>/dev/null' EXIT; \
	$(BIN)/cllm serve $(SERVE_ARGS); }

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy --strict src/

test: lint ui chromium
	cd ui && npm test --silent
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/verify.py
	$(BIN)/python bench/chains.py
	$(BIN)/python bench/measure.py
	$(BIN)/python bench/verifier.py
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/gpu.py
	$(BIN)/python bench/cli.py
	$(BIN)/python bench/attest.py
	$(BIN)/python bench/gpu_attest.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis ui/node_modules \
		src/cllm/server/static test-artifacts
