"""Every option at the boundary: an out-of-range or malformed value is one line on stderr, exit status 2,
and nothing in the run changes. Entry points run in-process here (fast); test_faults runs them as programs."""

import argparse
import dataclasses
import json
import signal

import pytest

from pipeline import cli, workers
from pipeline.errors import PipelineError
from pipeline.options import Range
from slurm import submit
from stages import combine, coteach, crossval, data, masks, noise, report, review

ENTRY_POINTS = {
    "data": data,
    "noise": noise,
    "crossval": crossval,
    "combine": combine,
    "masks": masks,
    "review": review,
    "coteach": coteach,
    "report": report,
}


@pytest.fixture(autouse=True)
def keep_signal_handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def call(module, argv: list[str], capsys) -> tuple[int, str]:
    """Run an entry point in-process as its __main__ does: (exit status, stderr)."""
    try:
        if hasattr(module, "STAGE"):
            cli.main(lambda: workers.run(module.STAGE, *workers.parsed(module.STAGE, argv)))
        else:
            cli.main(lambda: module.run(module.parser().parse_args(argv)))
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def snapshot(root):
    return {p: p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


def refused(module, argv, capsys, root=None, expect=()):
    before = snapshot(root) if root else None
    code, err = call(module, argv, capsys)
    assert code == 2, (argv, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
    for part in expect:
        assert part in lines[0], (argv, lines[0])
    if root:
        assert snapshot(root) == before
    return lines[0]


def bad_values(rng: Range) -> list[str]:
    step = 1 if rng.kind is int else 0.5
    out = ["abc", "nan", "inf", "-inf", ""]
    if rng.kind is int:
        out.append("1.5")
    if rng.lo is not None:
        out.append(str(rng.lo if rng.lo_open else rng.kind(rng.lo - step)))
    if rng.hi is not None:
        out.append(str(rng.hi if rng.hi_open else rng.kind(rng.hi + step)))
    return [v for v in out if not (rng.optional and v == "")]


def parsers():
    for name, module in ENTRY_POINTS.items():
        yield name, workers.parser(module.STAGE), module
    subs = next(a for a in submit.parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in subs.choices.items():
        yield f"slurm.submit {name}", p, None


def typed_flags():
    """Every number flag and every flag of choices, with each value it must refuse (a stage's option is checked by
    its dataclass; its range is the field's)."""
    for where, p, module in parsers():
        fields = {}
        if module is not None:
            for cls, only in workers.option_classes(module.STAGE):
                fields.update({f.name: f.metadata for f in dataclasses.fields(cls) if only is None or f.name in only})
        required = [x for r in p._actions if r.required and r.option_strings for x in (r.option_strings[0], "x")]
        for a in p._actions:
            meta = fields.get(a.dest, {})
            rng = meta.get("range") or (a.type if isinstance(a.type, Range) else None)
            choices = meta.get("choices") or a.choices
            values = bad_values(rng) if rng else ["bogus"] if choices and a.option_strings else []
            for value in values:
                yield pytest.param(
                    where,
                    p,
                    module,
                    a.option_strings[0],
                    value,
                    required,
                    id=f"{where} {a.option_strings[0]} {value!r}",
                )


@pytest.mark.parametrize("where,p,module,flag,value,required", typed_flags())
def test_every_typed_option_refuses_what_is_out_of_range(where, p, module, flag, value, required, tmp_path, capsys):
    """One line, exit 2, nothing written: the run directory is not even made (a stage checks its options first)."""
    if module is None:  # slurm.submit STAGE
        argv = [where.split()[1], "--run-dir", str(tmp_path / "run"), *required, flag, value]
        try:
            cli.main(lambda: submit.run(submit.parser().parse_args(argv)))
            code = 0
        except SystemExit as e:
            code = e.code
        err = capsys.readouterr().err
    else:
        code, err = call(module, ["--run-dir", str(tmp_path / "run"), *required, flag, value], capsys)
        assert not (tmp_path / "run").exists()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and flag in lines[0], lines


def test_every_stage_option_is_checked_however_it_is_made():
    """Every options dataclass of every stage validates itself (``options.Options``): from Python, a SLURM task
    list or flags alike."""
    from pipeline.options import Options
    from stages import registry

    for stage in registry().values():
        for cls, _ in workers.option_classes(stage):
            assert issubclass(cls, Options), (stage.name, cls)


def test_every_option_has_help_showing_its_default():
    for where, p, _ in parsers():
        formatter = p._get_formatter()
        for a in p._actions:
            if a.option_strings and a.dest != "help":
                assert a.help, f"{where} {a.option_strings[0]} has no --help text"
                assert "%(default)" in formatter._get_help_string(a) or a.required, f"{where} {a.option_strings[0]}"


SEMANTIC = [
    (crossval, ["--fold", "3", "--folds", "3"], ["--fold '3'", "[0, 2]"]),
    (crossval, ["--fold", "-1"], ["--fold"]),
    (crossval, ["--fold", "0,x"], ["--fold"]),
    (crossval, ["--fold", ""], ["--fold"]),
    (crossval, ["--gpu", "x"], ["--gpu 'x'"]),
    (crossval, ["--gpus", "0,gpu1"], ["--gpus"]),
    (crossval, ["--cond", "n99_s0"], ["no condition named n99_s0"]),
    (coteach, ["--methods", "nope"], ["--methods 'nope'"]),
    (coteach, ["--methods", "plain"], ["--methods 'plain'", "none"]),
    (coteach, ["--learners", "nope"], ["--learners 'nope'", "paper"]),
    (coteach, ["--learners", ""], ["--learners ''"]),
    (coteach, ["--seeds", "-1"], ["--seeds '-1'"]),
    (coteach, ["--seeds", "1.5"], ["--seeds"]),
    (coteach, ["--seeds", ""], ["--seeds"]),
    (coteach, ["--seeds", "99999999999"], ["--seeds"]),
    (
        coteach,
        ["--forget-rate", "0.995", "--batch-size", "128"],
        ["--forget-rate 0.995: keeps no example of a batch of 128"],
    ),
    (coteach, ["--sce-alpha", "0", "--sce-beta", "0"], ["sce would learn nothing"]),
    (noise, ["--conditions", "1.5:0"], ["noise must lie in [0, 0.9)"]),
    (noise, ["--conditions", "0.9:0"], ["noise must lie in"]),
    (noise, ["--conditions", "0.4:0.95"], ["sparsity must lie in [0, 0.888]"]),
    (noise, ["--conditions", "nan:0"], ["noise must lie in"]),
    (noise, ["--conditions", "0.4"], ["expected NOISE:SPARSITY"]),
    (noise, ["--conditions", "0.3:0,0.3:0.0"], ["n30_s0 is given twice"]),
    (noise, ["--labels", "../escape=x.npy"], ["'../escape'"]),
    (noise, ["--labels", "a/b=x.npy"], ["'a/b'"]),
    (noise, ["--labels", "..=x.npy"], ["'..'"]),
    (noise, ["--labels", ".hidden=x.npy"], ["'.hidden'"]),
    (noise, ["--labels", "=x.npy"], ["''"]),
    (noise, ["--labels", "ok"], ["expected NAME=FILE (a .npy of labels"]),
    (noise, ["--labels", "ok=/nonexistent.npy"], ["/nonexistent.npy: file not found"]),
    (noise, ["--remove", "nope"], ["--remove nope: no such condition"]),
    (noise, ["--cifar10n", "/nonexistent.pt"], ["/nonexistent.pt: file not found"]),
    (noise, [], ["give --conditions"]),
    (report, ["--seeds", "-1"], ["--seeds"]),
    (report, ["--cond", "x,"], ["no condition named x"]),
    (masks, ["--psx", "/nonexistent.npy", "--cond", "n20_s0"], ["/nonexistent.npy: file not found"]),
    (masks, ["--psx", "/etc/passwd"], ["one file: name one condition"]),
    (data, ["--source", "/nonexistent"], ["no such dataset", "Nothing is downloaded"]),
]


@pytest.mark.parametrize("module,argv,expect", SEMANTIC, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_semantic_checks_are_one_line_and_change_nothing(folds_run, module, argv, expect, capsys):
    refused(module, ["--run-dir", str(folds_run), *argv], capsys, folds_run, expect)


def test_run_dir_that_is_a_file_or_missing(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for module in ENTRY_POINTS.values():
        args = ["--source", "digits"] if module is data else []
        refused(module, ["--run-dir", str(tmp_path / "file"), *args], capsys, expect=["is not a directory"])
    refused(combine, ["--run-dir", str(tmp_path / "nowhere")], capsys, expect=["no such run directory"])
    assert not (tmp_path / "nowhere").exists()


def test_range_agrees_with_itself():
    r = Range(float, 0, 1, lo_open=True)
    assert r("0.5") == 0.5 and r("1") == 1.0
    for text in ("0", "1.01", "nan"):
        with pytest.raises(argparse.ArgumentTypeError):
            r(text)
    assert Range(int, 0, None)("7") == 7


def test_a_tampered_task_list_is_one_line(folds_run, tmp_path, capsys):
    from slurm import task as slurm_task

    good = {
        "stage": "crossval",
        "run_dir": str(folds_run),
        "force": False,
        "gpu": "cpu",
        "config": {
            "folds": 3,
            "fold_seed": 0,
            "arch": "convnet",
            "epochs": 2,
            "batch_size": 128,
            "lr": 0.1,
            "weight_decay": 5e-4,
            "seed": 0,
        },
        "tasks": [["n20_s0", 0]],
    }
    cases = {
        "missing": (None, "file not found"),
        "not json": ("{", "not a readable .json"),
        "another stage": ({**good, "stage": "train"}, "not a task list"),
        "bad option": (
            {**good, "config": {**good["config"], "epochs": -1}},
            "--epochs -1: expected an integer in [1, 10000]",
        ),
        "unknown option": (
            {**good, "config": {**good["config"], "momentum": 0.9}},
            "config does not fit the crossval stage",
        ),
        "fold out of range": (
            {**good, "tasks": [["n20_s0", 7]]},
            "not a (registered condition, fold < 3) crossval task",
        ),
        "unknown condition": ({**good, "tasks": [["../x", 0]]}, "not a (registered condition"),
    }
    for name, (content, expect) in cases.items():
        path = tmp_path / f"{name}.json"
        if content is not None:
            path.write_text(content if isinstance(content, str) else json.dumps(content))
        refused(slurm_task, [str(path), "0"], capsys, folds_run, [expect])
    path = tmp_path / "good.json"
    path.write_text(json.dumps(good))
    refused(slurm_task, [str(path), "1"], capsys, folds_run, ["task index 1: the list has tasks 0..0"])


@pytest.mark.parametrize(
    "warning",
    [UserWarning("a library's\nmultiline warning"), DeprecationWarning("old"), RuntimeWarning("overflow encountered")],
)
def test_a_warning_before_an_error_leaves_stderr_one_line(capsys, warning):
    import warnings

    from pipeline import cli

    def failing():
        warnings.simplefilter("always")
        warnings.warn(warning, stacklevel=1)
        raise PipelineError("data.csv: the real cause")

    saved = warnings.showwarning
    try:
        with pytest.raises(SystemExit) as stop:
            cli.main(failing)
    finally:
        warnings.showwarning = saved
    out = capsys.readouterr()
    assert stop.value.code == 2 and out.err == "error: data.csv: the real cause\n"
    assert f"warning: {type(warning).__name__}: {str(warning).splitlines()[0]}" in out.out


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "1e999"])
def test_no_number_flag_of_any_entry_point_accepts_nan_or_infinity(text, capsys):
    """A plain ``type=int/float`` flag is checked as a Range too (``cli.Parser``), besides the declared Ranges."""
    p = cli.Parser()
    p.add_argument("--x", type=float)
    p.add_argument("--budget", type=Range(float, 0, 10))
    for flag in ("--x", "--budget"):
        with pytest.raises(SystemExit) as e:
            p.parse_args([f"{flag}={text}"])
        assert e.value.code == 2 and "expected a finite number" in capsys.readouterr().err
    assert p.parse_args(["--x", "1.5"]).x == 1.5
