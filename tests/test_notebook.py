"""The stages from Python (``stages.notebook``): the command line's options and artifacts, results as DataFrames."""

import pytest
from conftest import FAST_CROSSVAL

from pipeline import store
from pipeline.errors import PipelineError
from stages.notebook import Run, _flags


def options(flags: list[str]) -> dict:
    """``["--folds", "3", "--gpu", "cpu"]`` as keyword arguments."""
    return {k[2:].replace("-", "_"): v for k, v in zip(flags[::2], flags[1::2])}


def test_a_run_from_python_makes_the_artifacts_the_command_line_makes(tmp_path):
    run = Run(tmp_path / "run")
    run.stage("data", source="digits")
    run.stage("noise", conditions=["0.2:0"])
    made = run.stage("crossval", fold="all", **options(FAST_CROSSVAL))
    assert made.stage == "crossval" and made.total == 3 and made.tasks == [("n20_s0", k) for k in range(3)]
    assert made.outcomes == [store.Outcome.MADE] * 3 and all(line.startswith("wrote ") for line in made.lines)
    again = run.stage("crossval", fold="all", **options(FAST_CROSSVAL))
    assert again.total == 3 and again.tasks == [] and again.outcomes == []  # all current: none run
    for name in ("combine", "masks", "review"):
        assert run.stage(name).outcomes == [store.Outcome.MADE]
    pooled = run.stage("masks", force=True, gpus="cpu,cpu")  # on a worker process: the same Result
    assert (pooled.tasks, pooled.outcomes, pooled.total) == ([("n20_s0",)], [store.Outcome.MADE], 1)
    issues = run.label_issues("n20_s0")
    flagged = store.verify(run.dir.label_issues("n20_s0"))["info"]["flagged"]
    assert len(issues) == flagged > 0 and list(issues.columns[:3]) == ["rank", "row", "id"]
    assert issues["label_quality"].is_monotonic_increasing and set(issues["true_label"]) <= set(range(10))
    tables = run.report()  # detection only: no learner trained
    assert {"table", "detection"} <= set(tables) and len(tables["detection"]) > 0
    with pytest.raises(
        PipelineError, match=r"error: stages.crossval: argument --epochs: '0': expected an integer in \[1, 10000\]"
    ):
        run.stage("crossval", epochs=0)
    with pytest.raises(PipelineError, match="nope: not a stage"):
        run.stage("nope")


def test_keyword_arguments_become_the_stages_flags():
    from pipeline import workers
    from stages import crossval, noise

    assert _flags(
        workers.parser(noise.STAGE), {"labels": ["a=x.npy", "b=y.npy"], "conditions": ["0.2:0", "0.4:0"]}
    ) == ["--labels", "a=x.npy", "--labels", "b=y.npy", "--conditions", "0.2:0,0.4:0"]
    assert _flags(
        workers.parser(crossval.STAGE), {"compile": False, "fold": [0, 2], "weights": None, "batch_size": 64}
    ) == ["--no-compile", "--fold", "0,2", "--batch-size", "64"]
