# Confident Learning on CIFAR-10 as separate, resumable stages. Every variable passes through.
# All stages share one run directory, RUN (default runs/main); `make demo` uses it too, so
# `make report` after `make demo` shows the demo, and a later `make all DATA=...` replaces it.
#   make all DATA=path/to/cifar10           the paper's 13 conditions, 4 folds, one GPU (GPU=0)
#   make crossval FOLD=0 GPU=0              fold 0 of every condition not yet done, on GPU 0
#   make combine && make masks && make coteach && make report
#   make coteach LEARNERS=plain             every CL mask's rows (and all rows) x cross-entropy: "train on the cleaned rows"
#   make noise CIFAR10N=CIFAR-10_human.pt CONDITIONS=    CIFAR-10N's five real human label sets (c10n_*)
#   make crossval-all GPUS=0,1,2,3          every fold, one worker process per GPU (GPUS=cpu: one CPU worker)
#   make crossval-all GPU=0 WORKERS_PER_GPU=4   four tasks at once on GPU 0 (a small network leaves a big GPU idle)
#   make slurm-crossval SLURM_ARGS="--partition gpu --time 4:00:00 --wait"   one SLURM array job (submitit)
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
GPUS ?=
WORKERS_PER_GPU ?= 1
COND ?=
METHODS ?= all
LEARNERS ?= paper
CIFAR10N ?=
SEEDS ?= 0
PSX ?=
WEIGHTS ?=
PAPER_JSON ?= ../shared/data/cl-paper/noisy_labels
DATA_ARGS ?=
CROSSVAL_ARGS ?=
BACKBONE_ARGS ?=
PREDICT_ARGS ?=
COMBINE_ARGS ?=
COTEACH_ARGS ?=
REVIEW_ARGS ?=
SLURM_ARGS ?=
TINY ?=
OUT ?=
EVIDENCE_ARGS ?=
# The target every stage depends on; on a machine with its own torch, `SETUP= PY=python3` skips the venv.
SETUP ?= setup

# Values are quoted where they reach the shell, so paths with spaces work (RUN="my runs/a").
run := --run-dir "$(RUN)"
cond := $(if $(COND),--cond "$(COND)")
devices := $(if $(GPUS),--gpus "$(GPUS)",--gpu "$(GPU)") --workers-per-gpu "$(WORKERS_PER_GPU)"

.PHONY: setup demo demo-own real-noise test lint data noise crossval crossval-all backbone predict combine consensus masks review coteach report all paper-labels \
        slurm-crossval slurm-backbone slurm-predict slurm-coteach slurm-combine slurm-consensus slurm-masks slurm-review slurm-up slurm-down gpu-evidence gpu-kit gpu-rehearsal

setup: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[test,review]'
	touch $@

# 8-px digits: the sgd recipe (the airbench recipe is made for 32-px images; on digits n40_s0 fold 0 it
# reached 58% held-out accuracy against the sgd recipe's 86%).
demo: setup
	$(MAKE) all DATA=digits CONDITIONS=0.2:0.0,0.4:0.4 FOLDS=3 GPU=cpu \
	  CROSSVAL_ARGS="--recipe sgd --epochs 15 --batch-size 64 --lr 0.05" \
	  COTEACH_ARGS="--epochs 12 --batch-size 64 --epoch-decay-start 6 --num-gradual 4"

# Your own dataset, for real: 1,797 digit PNGs of four sizes and a CSV with 10% of its training labels wrong
# (pipeline/demo_own.py), resized to 16 px; the labels as given (CONDITIONS=0:0); label issues and their
# gallery; every mask's rows and all rows x cross-entropy over 5 paired seeds: does cleaning help?
DEMO_OWN ?= runs/demo-own
own = RUN="$(DEMO_OWN)/run"
demo-own: setup
	$(PY) -m pipeline.demo_own build "$(DEMO_OWN)/source"
	$(MAKE) data $(own) DATA="$(DEMO_OWN)/source/labels.csv" DATA_ARGS="--image-size 16"
	$(MAKE) noise $(own) CONDITIONS=0:0
	$(MAKE) crossval-all $(own) GPUS=cpu FOLDS=3 CROSSVAL_ARGS="--recipe sgd --epochs 15 --batch-size 64 --lr 0.05"
	$(MAKE) combine masks review $(own)
	$(MAKE) coteach $(own) GPUS=cpu LEARNERS=plain SEEDS=0,1,2,3,4 \
	  COTEACH_ARGS="--epochs 12 --batch-size 64 --epoch-decay-start 6"
	$(MAKE) report $(own)
	$(PY) -m pipeline.demo_own check "$(DEMO_OWN)/source" "$(DEMO_OWN)/run"

# Real label errors, measured (docs/results/real-noise-cpu.md; about 30 minutes on 2 CPU cores): a backbone pretrained
# on CIFAR-10's TEST images (8,000 trained on, 2,000 held out: never the training split's labels), probed with
# cross-validation on CIFAR-10N's human labels, on generated noise of the same rates, and on the three workers'
# vote, whose consensus (make consensus) is probed too; then bench.real_noise's table into $(REAL_NOISE)/real-noise.json.
REAL_NOISE ?= runs/real-noise
CIFAR10_TAR ?= ../shared/data/cifar10-jpeg.tar.gz
CIFAR10N_FILE ?= ../shared/data/cifar10n/CIFAR-10_human.pt
rn = --run-dir "$(REAL_NOISE)/train"
rn_probe = --recipe linear-probe --arch airbench --weights "$(REAL_NOISE)/test/backbones/n0_s0.pt" --gpu cpu
rn_conds = c10n_aggre,n9_s0,c10n_random1,n17_s0,c10n_worse,n40_s0,c10n_workers
real-noise: setup
	@echo "[real-noise 1/6] CIFAR-10's test images, a backbone trained on 8,000 of them"
	mkdir -p "$(REAL_NOISE)/test-images" && tar xzf "$(CIFAR10_TAR)" -C "$(REAL_NOISE)/test-images" --strip-components 2 --wildcards '*/test/*'
	$(PY) -m stages.data --run-dir "$(REAL_NOISE)/test" --source "$(REAL_NOISE)/test-images" --test-fraction 0.2 --workers 2
	$(PY) -m stages.noise --run-dir "$(REAL_NOISE)/test" --conditions 0:0
	$(PY) -m stages.backbone --run-dir "$(REAL_NOISE)/test" --cond n0_s0 --recipe airbench --epochs 10 --gpu cpu
	@echo "[real-noise 2/6] the training images; CIFAR-10N's labels, its three workers, generated noise of the same rates"
	$(PY) -m stages.data $(rn) --source "$(CIFAR10_TAR)" --workers 2
	$(PY) -m stages.noise $(rn) --cifar10n "$(CIFAR10N_FILE)" --annotators c10n_workers="$(CIFAR10N_FILE)" --conditions 0.09:0.0,0.17:0.0,0.4:0.0
	@echo "[real-noise 3/6] the probe, cross-validated on each condition's labels"
	$(PY) -m stages.crossval $(rn) --fold all --cond $(rn_conds) $(rn_probe)
	$(PY) -m stages.combine $(rn) --cond $(rn_conds)
	@echo "[real-noise 4/6] the workers' consensus, and the probe on it"
	$(PY) -m stages.consensus $(rn) --cond c10n_workers
	$(PY) -m stages.crossval $(rn) --fold all --cond c10n_workers_consensus $(rn_probe)
	$(PY) -m stages.combine $(rn) --cond c10n_workers_consensus
	@echo "[real-noise 5/6] the five methods"
	$(PY) -m stages.masks $(rn) --cond $(rn_conds),c10n_workers_consensus
	@echo "[real-noise 6/6] measured against the truth"
	$(PY) -m bench.real_noise $(rn) --cond $(rn_conds),c10n_workers_consensus --json "$(REAL_NOISE)/real-noise.json"

# GPU evidence (bench/evidence.py): ONE call within 480 s, figures into OUT after every step (docs/results/gpu-<date>);
# TINY=1: the same steps on digits on this machine, into $(RUN)-tiny-evidence. On the GPU machine: see make gpu-kit.
gpu-evidence: $(SETUP)
	$(PY) -m bench.evidence $(if $(TINY),--tiny --run-dir "$(RUN)-tiny-evidence" --out "$(if $(OUT),$(OUT),$(RUN)-tiny-evidence/out)",$(if $(OUT),--out "$(OUT)")) \
	  $(EVIDENCE_ARGS)

# The kit for that call on a machine without cleanlab, submitit or network (bench/gpu_kit.py): wheels into .whl/,
# the data into .cache/shared/; prints the folders to carry and the command. gpu-rehearsal runs that command here.
gpu-kit: $(SETUP)
	$(PY) -m bench.gpu_kit kit

gpu-rehearsal: gpu-kit
	$(PY) -m bench.gpu_kit rehearse

test: lint
	$(PY) -m pytest -q

lint: setup  # ruff: lint and formatting, configured in pyproject.toml
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

data: setup
	@test -n "$(DATA)" || { echo "make data: pass DATA=<ImageFolder root or .tar.gz of one | a CSV of path,label | cifar-10-batches-py folder | digits>" >&2; exit 2; }
	$(PY) -m stages.data $(run) --source "$(DATA)" $(DATA_ARGS)

noise: setup
	$(PY) -m stages.noise $(run) --conditions "$(CONDITIONS)" $(if $(CIFAR10N),--cifar10n "$(CIFAR10N)")

crossval: setup
	$(PY) -m stages.crossval $(run) --fold "$(FOLD)" --gpu "$(GPU)" --folds "$(FOLDS)" $(cond) $(CROSSVAL_ARGS)

crossval-all: setup
	$(PY) -m stages.crossval $(run) --fold all $(devices) --folds "$(FOLDS)" $(cond) $(CROSSVAL_ARGS)

# A weights file (backbones/<c>.pt) trained on every training row with a condition's labels, for --weights FILE:
#   make backbone COND=n0_s0 GPU=0 BACKBONE_ARGS="--recipe airbench"
backbone: setup
	$(PY) -m stages.backbone $(run) $(devices) $(cond) $(BACKBONE_ARGS)

# A network trained on other images (make backbone in a run of the training split) predicts every row: a psx with
# no cross-validation, for auditing a test split; then COMBINE_ARGS="--ensemble folds,<its .npy>" averages the two.
#   make predict WEIGHTS=runs/train/backbones/n0_s0.pt GPU=0
predict: setup
	$(PY) -m stages.predict $(run) --gpu "$(GPU)" $(cond) --weights "$(WEIGHTS)" $(PREDICT_ARGS)

combine: setup
	$(PY) -m stages.combine $(run) $(cond) $(COMBINE_ARGS)

masks: setup
	$(PY) -m stages.masks $(run) $(cond) $(if $(PSX),--psx "$(PSX)")

# Several annotators (noise --annotators NAME=...) reconciled with the model once NAME has a psx: the condition
# NAME_consensus, and each annotator's quality (cleanlab's CROWDLAB).
consensus: setup
	$(PY) -m stages.consensus $(run) $(cond)

# Label issues to look at (label_issues.csv, label_issues.png); REVIEW_ARGS="--top 80 --by-class".
review: setup
	$(PY) -m stages.review $(run) $(cond) $(REVIEW_ARGS)

coteach: setup
	$(PY) -m stages.coteach $(run) $(devices) --methods "$(METHODS)" --learners "$(LEARNERS)" --seeds "$(SEEDS)" $(cond) $(COTEACH_ARGS)

report: setup
	$(PY) -m stages.report $(run) $(cond)

all: setup
	$(MAKE) data
	$(MAKE) noise
	$(MAKE) crossval-all
	$(MAKE) combine
	$(MAKE) masks
	$(MAKE) review
	$(MAKE) coteach
	$(MAKE) report

# SLURM: one array job over the pending tasks (submitit); SLURM_ARGS: --partition --account --time
# --gpus-per-task --cpus-per-task --mem --array-parallelism --extra FLAG --wait ... (python -m slurm.submit crossval --help)
slurm-crossval: setup
	$(PY) -m slurm.submit crossval $(run) --folds "$(FOLDS)" $(cond) $(CROSSVAL_ARGS) $(SLURM_ARGS)

slurm-backbone: setup
	$(PY) -m slurm.submit backbone $(run) $(cond) $(BACKBONE_ARGS) $(SLURM_ARGS)

slurm-predict: setup
	$(PY) -m slurm.submit predict $(run) $(cond) --weights "$(WEIGHTS)" $(PREDICT_ARGS) $(SLURM_ARGS)

slurm-coteach: setup
	$(PY) -m slurm.submit coteach $(run) --methods "$(METHODS)" --learners "$(LEARNERS)" --seeds "$(SEEDS)" $(cond) $(COTEACH_ARGS) $(SLURM_ARGS)

# The stages that train nothing: one CPU element per condition (no GPU unless SLURM_ARGS asks for one).
slurm-combine: setup
	$(PY) -m slurm.submit combine $(run) $(cond) $(SLURM_ARGS)

slurm-consensus: setup
	$(PY) -m slurm.submit consensus $(run) $(cond) $(SLURM_ARGS)

slurm-masks: setup
	$(PY) -m slurm.submit masks $(run) $(cond) $(if $(PSX),--psx "$(PSX)") $(SLURM_ARGS)

slurm-review: setup
	$(PY) -m slurm.submit review $(run) $(cond) $(REVIEW_ARGS) $(SLURM_ARGS)

# A real one-node SLURM cluster on this machine (root; Debian packages slurmctld slurmd slurm-client munge).
slurm-up:
	slurm/local-cluster.sh start

slurm-down:
	slurm/local-cluster.sh stop

# Rebuild data/cl_paper_cifar10_noisy_labels.npz from the paper's JSON files.
paper-labels: setup
	$(PY) -c "import sys; from pipeline.kinds import paper; paper.export(sys.argv[1])" "$(PAPER_JSON)"
