# fedlib — two commands do everything on a fresh machine:
#   make reproduce   (re-run the study; PROFILE=quick by default)
#   make test        (the test suite)
#   make record      (the committed lab record, outputs/quick/: before a commit that changes results)
# Both build .venv first when it is missing.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# SITE=1 (a cluster): the venv sees the module-loaded PyTorch (--system-site-packages), installs
# no torch and no MPI wheel, and builds mpi4py against the site MPI (MPICC: cc on Cray, else
# mpicc). A venv built that way stays in that mode (.venv/.site) for later make calls.
SITE ?= $(if $(wildcard $(VENV)/.site),1,)
MODE := $(if $(filter 1,$(SITE)),site,wheel)
# site mode: the python of the loaded modules (the one that imports their torch)
PYTHON ?= $(if $(filter site,$(MODE)),$(shell command -v python3 || command -v python),$(shell command -v python3.11 || command -v python3))
STAMP := $(VENV)/.installed-$(MODE)
MPICC ?= $(shell if [[ -n "$$PE_ENV$$CRAYPE_VERSION" ]] && command -v cc >/dev/null; then echo cc -shared; else echo mpicc; fi)
MPIEXEC ?= $(if $(filter site,$(MODE)),mpiexec,$(VENV)/bin/mpiexec)
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

.PHONY: install install-plan gpu-check test reproduce record run lab bench lint lock clean docs strip doctor

$(VENV)/.installed-wheel: pyproject.toml constraints.txt
	@if [[ -e $(VENV)/.site ]]; then echo "$(VENV) was built with SITE=1: make clean first to switch" >&2; exit 1; fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,mpi-wheel]'
	touch $@

# torch, numpy and MPI come from the site. fedlib.hpc.siteinstall pins the site's torch and numpy,
# relaxes the pins that depend on them, and dry-runs pip first: an install that would replace
# torch, numpy, triton or nvidia-* stops there with one line naming the conflict.
$(VENV)/.installed-site: pyproject.toml constraints.txt
	@if [[ -e $(VENV)/.installed-wheel ]]; then echo "$(VENV) has the MPI wheel: make clean first to use SITE=1" >&2; exit 1; fi
	@test -x $(PY) || $(PYTHON) -m fedlib.hpc.siteinstall base --python $(PYTHON)
	@$(PYTHON) -c "import torch" 2>/dev/null || { echo "SITE=1: $(PYTHON) has no torch; load the site's PyTorch module first (README: On a cluster)" >&2; exit 1; }
	@command -v $(firstword $(MPICC)) >/dev/null || { echo "SITE=1: no MPI compiler '$(MPICC)'; load the site's MPI module or set MPICC" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	touch $(VENV)/.site
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m fedlib.hpc.siteinstall plan --python $(PY) --out $(VENV)/constraints-site.txt
	MPICC="$(MPICC)" $(PY) -m pip install -q --no-cache-dir --no-binary=mpi4py --force-reinstall --no-deps \
	  "$$(grep -i '^mpi4py==' constraints.txt || echo 'mpi4py>=4')"
	$(PY) -m pip install -q -c $(VENV)/constraints-site.txt -e '.[dev]'
	touch $@

# make install SITE=1 DRY_RUN=1: what pip would install or replace, installing nothing; fails
# when that touches the site's torch, numpy, triton or nvidia-* (run it before anything else).
install-plan:
	@[[ "$(MODE)" == site ]] || { echo "DRY_RUN=1 plans a site install: make install SITE=1 DRY_RUN=1" >&2; exit 2; }
	@[[ -x $(PY) ]] || $(PYTHON) -m fedlib.hpc.siteinstall base --python $(PYTHON)
	@py=$$(if [[ -x $(PY) ]]; then echo $(PY); else echo $(PYTHON); fi); \
	  tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  $$py -m fedlib.hpc.siteinstall plan --python $$py --out "$$tmp/constraints-site.txt"

$(VENV): $(STAMP)

install: $(if $(filter 1,$(DRY_RUN)),install-plan,$(VENV))

test: $(VENV)
	$(PY) -m pytest -q

reproduce: $(VENV)
	$(PY) -m fedlib reproduce --profile $(PROFILE) $(foreach n,$(NB),--nb $(n))

# the committed lab record (outputs/quick/): reproduce, then index.html and README's claims table,
# then the staleness check; run it on a clean, committed tree before a commit that changes results
record: $(VENV)
	$(PY) -m fedlib reproduce --profile quick
	$(PY) -m fedlib record --profile quick
	$(PY) -m fedlib record --profile quick --check

run: $(VENV)
	$(MPIEXEC) -n $(RANKS) $(PY) -m fedlib run params/quickstart.yaml --set name=quickstart-$(RANKS)ranks

lab: $(VENV)
	$(VENV)/bin/jupyter lab notebooks/

bench: $(VENV)
	$(PY) -m fedlib bench --out outputs/bench

lint: $(VENV)
	$(VENV)/bin/ruff check fedlib tests notebooks
	$(PY) -m mypy

lock: $(VENV)
	@if [[ -e $(VENV)/.site ]]; then echo "make lock needs the wheel venv (a site venv sees the system packages)" >&2; exit 1; fi
	{ head -3 constraints.txt; $(PY) -m pip freeze --exclude-editable | sed 's/+cpu$$//'; } > constraints.new && mv constraints.new constraints.txt

# keeps the committed lab record (outputs/quick/), removes what git ignores there
clean:
	rm -rf $(VENV) $(filter-out outputs/quick/,$(wildcard outputs/*/)) .pytest_cache
	-git clean -fdXq outputs/quick

# on a machine with a GPU (<= 8 minutes, each step time-boxed): topology, doctor, peak FLOPs; the
# exact rows; accuracy fp32 vs bf16/fp16; tokens/s, MFU, memory, per-client overhead; pinned
# bandwidth and staging; checkpoint + resume; NCCL vs MPI with >= 2 GPUs; the GPU-specific tests.
# One table and outputs/gpucheck/gpucheck-<UTC time>/gpucheck.csv (+ throughput.csv)
gpu-check: $(VENV)
	$(PY) -m fedlib.bench.gpucheck --out outputs/gpucheck

doctor: $(VENV)
	$(PY) -m fedlib doctor

docs: $(VENV)
	$(PY) -m fedlib.config.docs

strip: $(VENV)
	$(VENV)/bin/nbstripout notebooks/*.ipynb
