# fedlib — two commands do everything on a fresh machine:
#   make reproduce   (re-run the study; PROFILE=quick by default)
#   make test        (the test suite)
# Both build .venv first when it is missing.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
NB ?=
RANKS ?= 2

# Open MPI: allow root (containers, CI) and more ranks than cores (virtual clients on laptops).
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export PRTE_MCA_rmaps_default_mapping_policy := :oversubscribe
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM := false
export PYTHONHASHSEED := 0

.PHONY: install test reproduce run lab bench lint lock clean docs strip

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

$(VENV): $(VENV)/.installed

install: $(VENV)

test: $(VENV)
	$(PY) -m pytest -q

reproduce: $(VENV)
	$(PY) -m fedlib reproduce --profile $(PROFILE) $(foreach n,$(NB),--nb $(n))

run: $(VENV)
	$(VENV)/bin/mpiexec -n $(RANKS) $(PY) -m fedlib run params/quickstart.yaml

lab: $(VENV)
	$(VENV)/bin/jupyter lab notebooks/

bench: $(VENV)
	$(PY) -m fedlib bench --out outputs/bench

lint: $(VENV)
	$(VENV)/bin/ruff check fedlib tests notebooks

lock: $(VENV)
	{ head -3 constraints.txt; $(PY) -m pip freeze --exclude-editable | sed 's/+cpu$$//'; } > constraints.new && mv constraints.new constraints.txt

clean:
	rm -rf $(VENV) outputs/*/ .pytest_cache

docs: $(VENV)
	$(PY) -m fedlib.docs

strip: $(VENV)
	$(VENV)/bin/nbstripout notebooks/*.ipynb
