"""The stages from Python (``stages.notebook``): the command line's options and artifacts, results as DataFrames."""

import subprocess
import sys

import pytest
from conftest import FAST_CROSSVAL

from pipeline import store
from pipeline.errors import PipelineError
from stages.notebook import Run, _values


def options(flags: list[str]) -> dict:
    """``["--folds", "3", "--gpu", "cpu"]`` as keyword arguments (numbers as numbers)."""

    def value(text: str):
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return text

    return {k[2:].replace("-", "_"): value(v) for k, v in zip(flags[::2], flags[1::2])}


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
    with pytest.raises(PipelineError) as refused:
        run.stage("crossval", epochs=0)
    said = subprocess.run(
        [sys.executable, "-m", "stages.crossval", "--run-dir", str(run.dir.root), "--epochs", "0"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert said.returncode == 2 and said.stderr.strip() == f"error: {refused.value}"  # the command line's one line
    assert str(refused.value) == "--epochs 0: expected an integer in [1, 10000] or none"
    with pytest.raises(PipelineError, match="nope: not a stage"):
        run.stage("nope")
    with pytest.raises(PipelineError, match="crossval: no option 'epoch' \\(choose from cond, fold, recipe"):
        run.stage("crossval", epoch=3)
    with pytest.raises(PipelineError, match="report: no option 'gpus'"):  # its one task runs here
        run.stage("report", gpus="cpu")


def test_keyword_arguments_are_the_stages_options(tmp_path):
    """Lists become comma-separated values, or the repeats of a repeatable option; a required one is asked for."""
    from stages import crossval, noise

    assert _values(noise.NoiseConfig, None, {"labels": ["a=x.npy", "b=y.npy"], "conditions": ["0.2:0", "0.4:0"]}) == {
        "labels": ("a=x.npy", "b=y.npy"),
        "conditions": "0.2:0,0.4:0",
    }
    assert _values(noise.NoiseConfig, None, {"remove": "a"}) == {"remove": ("a",)}
    assert _values(crossval.Select, None, {"fold": [0, 2]}) == {"fold": "0,2"}
    with pytest.raises(PipelineError, match="required: --source"):
        Run(tmp_path / "run").stage("data", image_size=8)
    assert not (tmp_path / "run").exists()
