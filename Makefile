# Confident Learning on CIFAR-10 as separate, resumable stages. Every variable passes through.
# All stages share one run directory, RUN (default runs/main); `make demo` uses it too, so
# `make report` after `make demo` shows the demo, and a later `make all DATA=...` replaces it.
#   make all DATA=path/to/cifar10           the paper's 13 conditions, 4 folds, one GPU (GPU=0)
#   make crossval FOLD=0 GPU=0              fold 0 of every condition not yet done, on GPU 0
#   make combine && make masks && make coteach && make report
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY ?= $(VENV)/bin/python

RUN ?= runs/main
DATA ?=
CONDITIONS ?= paper
FOLDS ?= 4
FOLD ?= 0
GPU ?= 0
COND ?=
METHODS ?= all
SEEDS ?= 0
PSX ?=
PAPER_JSON ?= ../shared/data/cl-paper/noisy_labels
CROSSVAL_ARGS ?=
COTEACH_ARGS ?=

run := --run-dir $(RUN)
cond := $(if $(COND),--cond $(COND))

.PHONY: setup demo test data noise crossval crossval-all combine masks coteach report all paper-labels

setup: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[test]'
	touch $@

demo: setup
	$(MAKE) all DATA=digits CONDITIONS=0.2:0.0,0.4:0.4 FOLDS=3 GPU=cpu \
	  CROSSVAL_ARGS="--epochs 15 --batch-size 64 --lr 0.05" \
	  COTEACH_ARGS="--epochs 12 --batch-size 64 --epoch-decay-start 6 --num-gradual 4"

test: setup
	$(PY) -m pytest -q

data: setup
	@test -n "$(DATA)" || { echo "make data: pass DATA=<ImageFolder root or .tar.gz of one | cifar-10-batches-py folder | digits>" >&2; exit 2; }
	$(PY) -m stages.data $(run) --source $(DATA)

noise: setup
	$(PY) -m stages.noise $(run) --conditions $(CONDITIONS)

crossval: setup
	$(PY) -m stages.crossval $(run) --fold $(FOLD) --gpu $(GPU) --folds $(FOLDS) $(cond) $(CROSSVAL_ARGS)

crossval-all: setup
	$(PY) -m stages.crossval $(run) --fold all --gpu $(GPU) --folds $(FOLDS) $(cond) $(CROSSVAL_ARGS)

combine: setup
	$(PY) -m stages.combine $(run) --folds $(FOLDS) $(cond)

masks: setup
	$(PY) -m stages.masks $(run) $(cond) $(if $(PSX),--psx $(PSX))

coteach: setup
	$(PY) -m stages.coteach $(run) --gpu $(GPU) --methods $(METHODS) --seeds $(SEEDS) $(cond) $(COTEACH_ARGS)

report: setup
	$(PY) -m stages.report $(run) $(cond)

all: setup
	$(MAKE) data
	$(MAKE) noise
	$(MAKE) crossval-all
	$(MAKE) combine
	$(MAKE) masks
	$(MAKE) coteach
	$(MAKE) report

# Rebuild data/cl_paper_cifar10_noisy_labels.npz from the paper's JSON files.
paper-labels: setup
	$(PY) -c "from pipeline.conditions import export_paper_labels; export_paper_labels('$(PAPER_JSON)')"
