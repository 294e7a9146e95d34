# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.adaptclip-installed

.PHONY: demo test install lint bench clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	@# the report test renders the HTML page in Debian's chromium, the DICOM-output tests run dicom3tools'
	@# dciodvfy; install them when we may (root, e.g. CI)
	@{ command -v chromium && command -v dciodvfy; } >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core \
	  dicom3tools; } || true
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --durations=15

demo: $(STAMP)
	$(PY) -m adaptclip_med.demo --out reports/demo

lint: $(STAMP)
	$(PY) -m ruff check adaptclip_med tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/inference.py --backbone adaptclip-tiny --image-size 518

clean-venv:
	rm -rf $(VENV)
