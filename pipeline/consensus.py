"""Several annotators reconciled with a model: cleanlab's CROWDLAB (``cleanlab.multiannotator``). Once a condition of
several annotators (``kinds.annotators``: its labels are their majority vote) has a psx, each training row gets a
consensus label, weighing every annotator's label and the model's probabilities by how much each is trusted, and
each annotator a quality. The consensus labels are an artifact (``conditions/<c>/consensus.npy``, the annotators'
qualities in its manifest; the consensus's quality per row, cleanlab's score, in ``consensus_quality.npy``) and a condition of their own, ``<c>_consensus``, that every later stage takes as it is."""

from __future__ import annotations

import functools

import numpy as np

from pipeline import conditions, datasets, store
from pipeline.errors import PipelineError
from pipeline.folds import read_probs
from pipeline.kinds import KINDS, annotators
from pipeline.layout import RunDir

SUFFIX = "_consensus"  # the consensus condition of <c> is <c>_consensus


def annotator_sources(run: RunDir, cond: str) -> list | None:
    """The annotators' files behind ``cond`` (a condition of several annotators, or its consensus), else None."""
    specs = conditions.registry(run)
    base = cond.removesuffix(SUFFIX) if cond.endswith(SUFFIX) else cond
    if base not in specs or specs[base].kind != "annotators" or (base != cond and cond not in specs):
        return None
    return KINDS["annotators"].sources(specs[base], None)


def run_consensus(run: RunDir, cond: str, force: bool = False) -> tuple[store.Outcome, store.Outcome]:
    """Write ``cond``'s consensus labels, then register (or refresh) the condition ``<cond>_consensus`` made of them."""
    loaded = conditions.load(run, cond)
    if loaded.condition.kind != "annotators":
        raise PipelineError(f"{cond}: not a condition of several annotators (make it with noise --annotators)")
    sources = KINDS["annotators"].sources(loaded.condition, None)
    inputs = {
        "dataset": run.require(run.dataset, "data"),
        "labels": loaded.labels,
        "psx": run.require(run.psx(cond), "combine"),
        **{f"source{i}": store.External(s) for i, s in enumerate(sources)},
    }

    @functools.cache
    def crowdlab():
        """(consensus labels, their quality per row, the manifest's facts), computed once for both artifacts."""
        from cleanlab.multiannotator import get_label_quality_multiannotator

        ds, vote = datasets.cached(inputs["dataset"]), store.read(loaded.labels)
        labels, names = annotators.matrix(sources, ds)
        psx = read_probs(inputs["psx"], ds.num_classes, str(inputs["psx"]))
        if len(psx) != len(vote):
            raise PipelineError(f"{inputs['psx']}: {len(psx)} rows but {len(vote)} training rows")
        found = get_label_quality_multiannotator(
            annotators.as_float(labels), psx, return_detailed_quality=False, return_weights=True, verbose=False
        )
        consensus = found["label_quality"]["consensus_label"].to_numpy().astype(np.int64)
        quality = found["label_quality"]["consensus_quality_score"].to_numpy().astype(np.float32)
        stats = found["annotator_stats"]
        info = {
            "annotators": [
                {
                    "name": names[j],
                    "quality": float(stats.loc[j, "annotator_quality"]),
                    "agreement_with_consensus": float(stats.loc[j, "agreement_with_consensus"]),
                    "labelled": int(stats.loc[j, "num_examples_labeled"]),
                    "worst_class": str(ds.classes[int(stats.loc[j, "worst_class"])]),
                }
                for j in range(len(names))
            ],
            "model_weight": float(found["model_weight"]),
            "changed_from_vote": int(np.sum(consensus != vote)),
        }
        if np.any(vote != ds.train_y):  # the dataset's labels are the truth only then (as review assumes)
            info["error_vs_truth"] = {
                "consensus": float(np.mean(consensus != ds.train_y)),
                "majority_vote": float(np.mean(vote != ds.train_y)),
                **{f"annotator {n}": _error(labels[:, j], ds.train_y) for j, n in enumerate(names)},
            }
        return consensus, quality, info

    made = [
        store.produce(path, root=run.root, stage="consensus", inputs=inputs, config={}, make=make, force=force)
        for path, make in (
            (run.consensus(cond), lambda: (crowdlab()[0], crowdlab()[2])),
            (run.consensus_quality(cond), lambda: (crowdlab()[1], {"mean": float(crowdlab()[1].mean())})),
        )
    ]
    condition = conditions.Condition(f"{cond}{SUFFIX}", None, None, str(run.consensus(cond).resolve()))
    [(_, registered)] = conditions.update(run, [condition], [], None, force)
    return store.Outcome.of(made), registered


def _error(labels: np.ndarray, true: np.ndarray) -> float:
    """The fraction of an annotator's labels that are wrong, over the rows it labelled."""
    given = labels != annotators.MISSING
    return float(np.mean(labels[given] != true[given]))
