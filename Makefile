# Two entry points (see README): `make lab` and `make test`. Everything else is set-up they need.
SHELL := /bin/bash
PY := .venv/bin/python
PORT ?= 8888
# GPU machines take PyTorch's normal (CUDA) build; elsewhere the CPU build pinned here.
TORCH ?= $(if $(shell command -v nvidia-smi),torch,torch==2.13.0)
ROOT := $(filter 0,$(shell id -u))
SUDO := $(if $(ROOT),,sudo)
APT_PACKAGES := chromium espeak-ng sox nginx openssl

.PHONY: lab test test-python test-js lint test-wheel test-extras wheel bench setup system python js models clean

lab: setup
	FUNASR_WIDGET_MODELS=$(CURDIR)/models $(PY) -m jupyter lab --ip=127.0.0.1 --port=$(PORT) --no-browser \
		$(if $(ROOT),--allow-root) --ServerApp.root_dir=notebooks notebooks/01_live_dictation.ipynb

test: setup test-js lint test-python test-wheel test-extras

# The front end: its node tests, biome's lint and tsc's check of the JSDoc types (package.json).
test-js: js
	npm test
	npm run lint
	npm run typecheck

# The package's style and types: ruff (lint and format) and mypy, configured in pyproject.toml.
lint: python
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

test-python: python models
	$(PY) -m pytest

# The package as users get it: the wheel (its build hook bundles js/; here the bundle `js` made),
# installed into a fresh venv, not editable, with the same torch; then the browser test that
# records and transcribes, run from inside that venv (so `import funasr_widget` cannot find this
# source tree) against the installed copy, in JupyterLab and in Notebook 7.
WHEEL_DIR := build/wheel
WHEEL := $(WHEEL_DIR)/funasr_widget-*.whl
WHEEL_VENV := build/wheel-venv
wheel: python js
	rm -rf $(WHEEL_DIR)
	$(PY) -m build --wheel --outdir $(WHEEL_DIR) .

test-wheel: wheel models
	rm -rf $(WHEEL_VENV)
	python3 -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -m pip install -q --upgrade pip
	$(WHEEL_VENV)/bin/python -m pip install -q "$(TORCH)"
	$(WHEEL_VENV)/bin/python -m pip install -q "$$(echo $(WHEEL))[asr,notebooks,test]"
	cd $(WHEEL_VENV) && for frontend in lab notebook; do \
		FUNASR_WIDGET_TEST_INSTALLED=1 FUNASR_WIDGET_TEST_FRONTEND=$$frontend \
			bin/python -m pytest -m browser $(CURDIR)/tests/browser/test_recognition.py || exit 1; \
	done

# The same wheel as users get it with no extras, with only [remote] and with only [onnx] (no
# torch, no funasr), each in a fresh venv with pytest alone beside it; tests/test_installed_extras.py
# then runs from inside the venv (so the source tree is not importable) and checks what that
# install promises. Its models: the real FSMN-VAD and a tiny SenseVoiceSmall with its ONNX export,
# made here with torch and funasr, as a user makes them once (`python -m funasr_widget.models export`).
EXTRAS_MODELS := build/extras-models
$(EXTRAS_MODELS)/sensevoice-small/model_quant.onnx: | python
	$(PY) -m funasr_widget.samples --out $(EXTRAS_MODELS) fsmn-vad sensevoice-small
	$(PY) -m funasr_widget.models export $(EXTRAS_MODELS)/sensevoice-small --quantize

test-extras: wheel $(EXTRAS_MODELS)/sensevoice-small/model_quant.onnx
	for extras in bare remote onnx; do \
		venv=build/venv-$$extras; \
		rm -rf $$venv && python3 -m venv $$venv || exit 1; \
		$$venv/bin/python -m pip install -q --disable-pip-version-check pytest pytest-timeout \
			"$$(echo $(WHEEL))$$([ $$extras = bare ] || echo "[$$extras]")" || exit 1; \
		(cd $$venv && FUNASR_WIDGET_TEST_EXTRAS=$$extras FUNASR_WIDGET_MODELS=$(CURDIR)/$(EXTRAS_MODELS) \
			bin/python -m pytest -q $(CURDIR)/tests/test_installed_extras.py) || exit 1; \
	done

# Benchmarks (bench/README.md): about 11 minutes on 2 cores; writes bench/RESULTS.md.
bench: setup
	$(PY) -m bench

setup: system python js models

system:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# The editable install skips pyproject's JS build hook: the js target builds the bundle.
python: .venv/.installed
.venv/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	SKIP_JUPYTER_BUILDER=1 $(PY) -m pip install -q -e ".[asr,silero,notebooks,test,remote,server,onnx,export]"
	touch $@

js: funasr_widget/static/widget.js
funasr_widget/static/widget.js: package.json package-lock.json js/package.json $(wildcard js/*.js js/*.mjs js/*.css)
	npm ci --no-audit --no-fund
	npm run build

models: python
	$(PY) -m funasr_widget.samples --out models fsmn-vad

clean:
	rm -rf .venv node_modules funasr_widget/static test-artifacts build dist
