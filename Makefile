# Two entry points (see README): `make lab` and `make test`. Everything else is set-up they need.
SHELL := /bin/bash
PY := .venv/bin/python
PORT ?= 8888
# GPU machines take PyTorch's normal (CUDA) build; elsewhere the CPU build pinned here.
TORCH ?= $(if $(shell command -v nvidia-smi),torch,torch==2.13.0)
ROOT := $(filter 0,$(shell id -u))
SUDO := $(if $(ROOT),,sudo)
APT_PACKAGES := chromium espeak-ng sox nginx openssl

.PHONY: lab test test-python test-js test-wheel bench setup system python js models clean

lab: setup
	FUNASR_WIDGET_MODELS=$(CURDIR)/models $(PY) -m jupyter lab --ip=127.0.0.1 --port=$(PORT) --no-browser \
		$(if $(ROOT),--allow-root) --ServerApp.root_dir=notebooks notebooks/01_live_dictation.ipynb

test: setup test-js test-python test-wheel

test-js: js
	npm test

test-python: python models
	$(PY) -m pytest

# The package as users get it: the wheel (its build hook bundles js/; here the bundle `js` made),
# installed into a fresh venv, not editable, with the same torch; then the browser test that
# records and transcribes, run from inside that venv (so `import funasr_widget` cannot find this
# source tree) against the installed copy, in JupyterLab and in Notebook 7.
WHEEL_DIR := build/wheel
WHEEL_VENV := build/wheel-venv
test-wheel: python js models
	rm -rf $(WHEEL_DIR) $(WHEEL_VENV)
	$(PY) -m build --wheel --outdir $(WHEEL_DIR) .
	python3 -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -m pip install -q --upgrade pip
	$(WHEEL_VENV)/bin/python -m pip install -q "$(TORCH)"
	$(WHEEL_VENV)/bin/python -m pip install -q "$$(echo $(WHEEL_DIR)/funasr_widget-*.whl)[asr,notebooks,test]"
	cd $(WHEEL_VENV) && for frontend in lab notebook; do \
		FUNASR_WIDGET_TEST_INSTALLED=1 FUNASR_WIDGET_TEST_FRONTEND=$$frontend \
			bin/python -m pytest -m browser $(CURDIR)/tests/browser/test_recognition.py || exit 1; \
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
	SKIP_JUPYTER_BUILDER=1 $(PY) -m pip install -q -e ".[asr,silero,notebooks,test,remote,server]"
	touch $@

js: funasr_widget/static/widget.js
funasr_widget/static/widget.js: package.json package-lock.json js/package.json $(wildcard js/*.js js/*.mjs js/*.css)
	npm ci --no-audit --no-fund
	npm run build

models: python
	$(PY) -m funasr_widget.samples --out models fsmn-vad

clean:
	rm -rf .venv node_modules funasr_widget/static test-artifacts build dist
