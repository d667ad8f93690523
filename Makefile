# Two commands on a fresh machine:  make train  |  make test
# Both create .venv with the locked dependencies first (uv, from the package registry).
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
# The environment may forbid writing .pyc files; the compiled bytecode makes imports ~3x faster.
export PYTHONDONTWRITEBYTECODE :=

.PHONY: install train test lint docs docs-serve bench lock clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "uv>=0.5"
	$(UV) pip install --python $(PY) --compile-bytecode -r requirements.lock -e ".[dev]"
	touch $@

train: install
	$(PY) train.py $(ARGS)

test: install
	$(PY) -m pytest $(ARGS)

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy

# The documentation site (docs/, docs/conf.py) into site/: Sphinx with MyST, warnings as errors
# (-W, all listed with --keep-going) and nitpicky (-n), so a broken link or anchor, a missing
# image or a reference to a renamed function fails the build. -E: read every page afresh each
# time (Sphinx does not see edits to the docstrings, and would not repeat an earlier warning).
docs: install
	$(VENV)/bin/sphinx-build -E -W --keep-going -n -b html docs site

docs-serve: docs
	$(PY) -m http.server --bind 127.0.0.1 --directory site 8000

bench: install
	$(PY) scripts/bench_train.py

lock:
	$(UV) pip compile pyproject.toml --extra dev --extra cluster --extra opensmile --extra mic --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 -o requirements.lock

clean:
	rm -rf $(VENV) logs outputs multirun site
