"""Provenance by construction, on a real digits run: change any artifact (or the config asked for) and
exactly what depends on it is stale; stages refuse stale inputs in one line; the report leaves stale
results out and lists them."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST_COTEACH, stage

from pipeline import conditions, files, report, store
from pipeline.errors import PipelineError
from pipeline.layout import RunDir
from pipeline.learners import BY_NAME, LEARNERS
from pipeline.masks import CL_METHODS
from stages import coteach, crossval


@pytest.fixture(scope="module")
def full_run(folds_run, tmp_path_factory) -> Path:
    """Every stage done: two conditions, psx, masks, coteach (n20_s0: C+NR and all rows x coteaching, all rows
    x mixup and x sce), report."""
    root = shutil.copytree(folds_run, tmp_path_factory.mktemp("full") / "run")
    stage("combine", root)
    stage("masks", root)
    stage(
        "coteach",
        root,
        "--cond",
        "n20_s0",
        "--methods",
        "both,none",
        "--learners",
        "coteaching",
        *FAST_COTEACH,
        "--epochs",
        "1",
    )
    stage(
        "coteach",
        root,
        "--cond",
        "n20_s0",
        "--methods",
        "none",
        "--learners",
        "mixup,sce",
        *FAST_COTEACH,
        "--epochs",
        "1",
    )
    return root


@pytest.fixture
def run(full_run, tmp_path) -> RunDir:
    return RunDir(shutil.copytree(full_run, tmp_path / "run"))


def artifacts(run: RunDir) -> dict[Path, set[Path]]:
    """Every artifact of the run -> the artifacts it was made from (directly), from the manifests."""
    out = {}
    for m in run.root.rglob("*.manifest.json"):
        art = m.with_name(m.name[: -len(".manifest.json")])
        out[art] = {(art.parent / r["path"]).resolve() for r in json.loads(m.read_text())["inputs"].values()}
    return out


def downstream(graph: dict[Path, set[Path]], changed: Path) -> set[Path]:
    found, grew = {changed.resolve()}, True
    while grew:
        more = {a.resolve() for a, ins in graph.items() if ins & found}
        grew = not more <= found
        found |= more
    return found - {changed.resolve()}


def remake(path: Path) -> None:
    """Replace an artifact with other valid contents and a matching manifest, as re-running its stage would."""
    value = files.load(path)
    if isinstance(value, np.ndarray) and value.dtype == bool:
        value = value.copy()
        value.flat[0] = not value.flat[0]
    elif isinstance(value, np.ndarray):
        value = value.copy()
        value.flat[0] = value.flat[1] if value.flat[0] != value.flat[1] else value.flat[0] + 1
    elif isinstance(value, dict) and path.suffix == ".npz":
        key = sorted(value)[-1]
        value[key] = value[key].copy()
        value[key].flat[0] = not value[key].flat[0] if value[key].dtype == bool else value[key].flat[0] + 1
    else:
        value = {**value, "edited": True}
    files.save(path, value)
    manifest = json.loads(store.manifest_path(path).read_text())
    store.write_manifest(path, {**manifest, "checksum": files.checksum(path)})


def accuracy_row(md: str, method: str) -> bool:
    return any(line.startswith(f"| {method} |") for line in md.splitlines())


KINDS = {
    "dataset": lambda run: run.dataset,
    "labels": lambda run: run.labels("n20_s0"),
    "shard": lambda run: run.shard("n20_s0", 1),
    "psx": lambda run: run.psx("n20_s0"),
    "mask": lambda run: run.mask("n20_s0", "both"),
    "coteach result": lambda run: run.coteach("n20_s0", "both", "coteaching", 0),
}


@pytest.mark.parametrize("kind", KINDS)
def test_remaking_any_artifact_makes_exactly_its_dependants_stale(run, kind):
    graph = artifacts(run)
    assert len(graph) == 2 * (1 + 3 + 1 + 5) + 1 + 4  # labels, 3 shards, psx, 5 masks per condition; dataset; 4 results
    changed = KINDS[kind](run)
    remake(changed)
    stale = downstream(graph, changed)
    assert stale or kind == "coteach result"
    for art in graph:
        if art.resolve() in stale:
            with pytest.raises(store.PipelineError, match="is stale"):
                store.verify(art)
        else:
            store.verify(art)
    _, md = report.write(run, conditions.names(run))
    shown = accuracy_row(md, "C+NR × Co-Teaching")
    assert shown == (run.coteach("n20_s0", "both", "coteaching", 0).resolve() not in stale)
    assert ("Not shown: stale" in md) == bool(stale)


def test_a_hand_edited_result_is_not_reported(run):
    path = run.coteach("n20_s0", "both", "coteaching", 0)
    metrics = files.load(path)
    path.write_text(json.dumps({**metrics, "final_acc": 0.99, "best_acc": 0.99}))
    _, md = report.write(run, conditions.names(run))
    assert "99.0" not in md and not accuracy_row(md, "C+NR × Co-Teaching")
    assert f"{path}: changed since it was made" in md


def test_a_file_a_config_records_by_checksum_is_an_input_like_any_artifact(run, tmp_path):
    """``masks --psx F``, review and the report; F overwritten: the masks, the review page and the report's detection
    are stale, each naming F, until masks and review run again."""
    psx = tmp_path / "psx.npy"
    np.save(psx, files.load(run.psx("n40_s40")))
    stage("masks", run.root, "--cond", "n40_s40", "--psx", str(psx))
    stage("review", run.root, "--cond", "n40_s40")
    stale = f"is stale: {psx} changed after it was made"
    _, md = report.write(run, conditions.names(run))
    assert "n40_s40/label_issues.html" in md and stale not in md
    np.save(psx, np.roll(files.load(run.psx("n40_s40")), 1, axis=0))  # other probabilities, the same shape
    err = stage("review", run.root, "--cond", "n40_s40", ok=False).stderr.strip()
    assert len(err.splitlines()) == 1 and stale in err, err
    _, md = report.write(run, conditions.names(run))
    assert "n40_s40/label_issues.html)" not in md and stale in md
    assert not any(d.cond == "n40_s40" for d in report.collect(run, ["n40_s40"]).detection)
    stage("masks", run.root, "--cond", "n40_s40", "--psx", str(psx))
    stage("review", run.root, "--cond", "n40_s40")
    _, md = report.write(run, conditions.names(run))
    assert "n40_s40/label_issues.html" in md and stale not in md


def test_a_given_label_file_is_an_input_of_its_condition(run, tmp_path):
    given = tmp_path / "given.npy"
    np.save(given, files.load(run.labels("n20_s0")))
    stage("noise", run.root, "--labels", f"g={given}")
    store.verify(run.labels("g"))
    np.save(given, np.roll(files.load(run.labels("n20_s0")), 1))
    with pytest.raises(PipelineError, match=f"is stale: {given} changed after it was made; rerun make noise"):
        store.verify(run.labels("g"))
    stage("noise", run.root, "--labels", f"g={given}")  # remade from the file as it is now
    assert np.array_equal(store.read(run.labels("g")), np.load(given))


def test_new_noise_makes_downstream_stages_refuse_and_the_report_drop_old_results(run):
    stage("noise", run.root, "--conditions", "0.2:0.0", "--seed", "5")  # same name, new labels
    err = stage("masks", run.root, "--cond", "n20_s0", ok=False).stderr.strip()
    assert len(err.splitlines()) == 1
    assert "psx.npy is stale" in err and "labels.npy changed after it was made; rerun make crossval" in err
    assert (
        "3 of 3"
        in stage(
            "crossval",
            run.root,
            "--cond",
            "n20_s0",
            "--fold",
            "all",
            "--folds",
            "3",
            "--gpu",
            "cpu",
            "--epochs",
            "1",
            "--lr",
            "0.01",
        ).stdout.splitlines()[0]
    )
    out = stage("report", run.root).stdout
    assert not accuracy_row(out, "C+NR × Co-Teaching") and not accuracy_row(out, "all rows × Co-Teaching")
    assert f"{run.coteach('n20_s0', 'both', 'coteaching', 0)} is stale" in out
    assert "n40_s40" in out.split("Label-error detection")[1]  # the untouched condition is still reported


def test_another_dataset_makes_every_later_stage_stale(run):
    ds = files.load(run.dataset)
    ds["train_x"] = 255 - ds["train_x"]
    store.produce(
        run.dataset,
        root=run.root,
        stage="data",
        inputs={},
        config={"source": "inverted"},
        make=lambda: (ds, {"classes": list(ds["classes"])}),
    )
    err = stage("combine", run.root, ok=False).stderr
    assert "is stale" in err and "dataset.npz changed after it was made; rerun make noise" in err
    out = stage("report", run.root).stdout
    assert "labels.npy is stale" in out and not accuracy_row(out, "C+NR × Co-Teaching")


def vary(value, field, weights_file=None):
    """Another valid value of a config field (``weights_file``: a file for --weights)."""
    if field.metadata.get("choices"):
        return next(c for c in field.metadata["choices"] if c != value)
    if field.name in ("arch", "weights"):
        return {"arch": "convnet" if value != "convnet" else "airbench", "weights": str(weights_file)}[field.name]
    if value is None:
        lo = field.metadata["range"].lo
        return max(1, int(lo or 1)) if field.metadata["range"].kind is int else 0.25
    if isinstance(value, bool):
        return not value
    other = value * 2 if value else 1
    try:
        return field.metadata["range"].check(other)
    except ValueError:  # at the top of its range
        return value / 2


@pytest.mark.parametrize("stage_obj", [crossval.STAGE, coteach.STAGE], ids=lambda s: s.name)
def test_every_config_option_is_part_of_currency(run, stage_obj, tmp_path):
    if stage_obj is crossval.STAGE:
        config, task = crossval.CrossvalConfig(folds=3, epochs=2, batch_size=128), ("n20_s0", 0)
    else:
        config = coteach.CoteachConfig(epochs=1, batch_size=128, epoch_decay_start=1, num_gradual=1)
        task = ("n20_s0", "both", "coteaching", 0)
    assert stage_obj.pending(run, [task], config) == []
    (tmp_path / "weights.pt").write_bytes(b"weights")  # --weights: its checksum is what the config records
    for f in dataclasses.fields(config):
        if f.name == "features":  # needs --weights: with them, heads on the features are another task than networks
            nets = dataclasses.replace(config, weights=str(tmp_path / "weights.pt"))
            heads = dataclasses.replace(nets, features=True)
            assert stage_obj.target(run, task, heads)[1:] != stage_obj.target(run, task, nets)[1:]
            continue
        changed = dataclasses.replace(config, **{f.name: vary(getattr(config, f.name), f, tmp_path / "weights.pt")})
        if f.name == "folds":
            continue  # another fold count is another assignment: every fold is a new task
        if f.name in {o for spec in LEARNERS for o in spec.options}:
            continue  # a learner's own option: see the next test
        assert stage_obj.pending(run, [task], changed) == [task], f.name


def test_a_learners_own_option_makes_only_that_learners_results_stale(run):
    config = coteach.CoteachConfig(epochs=1, batch_size=128, epoch_decay_start=1, num_gradual=1)
    done = [("n20_s0", "both", "coteaching", 0), ("n20_s0", "none", "mixup", 0), ("n20_s0", "none", "sce", 0)]
    assert coteach.STAGE.pending(run, done, config) == []
    for name in sorted({o for spec in LEARNERS for o in spec.options}):
        f = next(f for f in dataclasses.fields(config) if f.name == name)
        changed = dataclasses.replace(config, **{name: vary(getattr(config, name), f)})
        assert coteach.STAGE.pending(run, done, changed) == [t for t in done if name in BY_NAME[t[2]].options], name


def test_a_result_of_the_one_file_masks_layout_is_stale_not_reported(run):
    """Before each method had its own mask, coteach results read masks.npz: such a result still verifies (its
    old input is intact) but is not what coteach reads now, so the report leaves it out, naming why."""
    old = run.old_masks("n20_s0")
    both = run.mask("n20_s0", "both")
    store.produce(
        old, root=run.root, stage="masks", inputs={}, config={}, make=lambda: ({"both": files.load(both)}, {})
    )
    result = run.coteach("n20_s0", "both", "coteaching", 0)
    manifest = store.verify(result)
    inputs = {"dataset": run.dataset, "labels": run.labels("n20_s0"), "masks": old}
    store.produce(
        result,
        root=run.root,
        stage="coteach",
        inputs=inputs,
        config=manifest["config"],
        force=True,
        make=lambda: (files.load(result), manifest["info"]),
    )
    store.verify(result)  # intact
    out = stage("report", run.root).stdout
    assert f"{result} is stale: made from other inputs than make coteach reads for it now (mask, masks)" in out
    assert not accuracy_row(out, "C+NR × Co-Teaching")
    config = coteach.CoteachConfig(epochs=1, batch_size=128, epoch_decay_start=1, num_gradual=1)
    assert coteach.STAGE.pending(run, [("n20_s0", "both", "coteaching", 0)], config) != []
    assert (
        f"note: {old} holds the masks of the layout before one file per method"
        in stage("masks", run.root, "--force").stdout
    )


def copy_over(src: Path, dst: Path) -> None:
    """Copy an artifact and its manifest over another's, times kept (cp -p)."""
    for a, b in ((src, dst), (store.manifest_path(src), store.manifest_path(dst))):
        shutil.copy2(a, b)


def test_every_manifest_names_the_artifact_it_describes(run):
    for m in run.root.rglob("*.manifest.json"):
        art = m.with_name(m.name[: -len(".manifest.json")])
        assert json.loads(m.read_text())["artifact"] == art.relative_to(run.root).as_posix()


def test_a_mask_copied_over_another_methods_is_read_as_nothing_but_stale(run):
    both, pbc = run.mask("n20_s0", "both"), run.mask("n20_s0", "prune_by_class")
    copy_over(pbc, both)
    claim = f"{both} is stale: its manifest describes conditions/n20_s0/masks/prune_by_class.npy"
    with pytest.raises(store.PipelineError, match=claim.replace(".", r"\.")):
        store.read(both)
    found = report.collect(run, conditions.names(run))
    assert any(s.startswith(claim) for s in found.stale)
    assert not [r for r in found.detection if r.condition == "n20_s0" and r.method == "both"]
    err = stage(
        "coteach",
        run.root,
        "--cond",
        "n20_s0",
        "--methods",
        "both",
        "--learners",
        "coteaching",
        *FAST_COTEACH,
        "--epochs",
        "1",
        ok=False,
    ).stderr.strip()
    assert len(err.splitlines()) == 1 and claim in err, err
    out = stage("masks", run.root, "--cond", "n20_s0").stdout
    assert f"wrote: {both}" in out and f"current: {pbc}" in out
    store.verify(both)


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.update(precision="0.9"),  # a string where a number goes
        lambda d: d.update(extra=1),
        lambda d: d.pop("f1"),
        lambda d: d.clear(),
    ],
)
@pytest.mark.parametrize("sealed", [True, False], ids=["sealed", "an older run's, unsealed"])
def test_a_hand_edited_detection_in_a_masks_manifest_is_left_out_in_one_line(run, edit, sealed):
    """A sealed manifest that was edited is stale, its info never read; an older run's unsealed one is read only
    as masks writes it; either way that method's detection is left out in one line."""
    path = store.manifest_path(run.mask("n20_s0", "both"))
    manifest = json.loads(path.read_text())
    if not sealed:
        del manifest["seal"]
    edit(manifest["info"]["detection"])
    path.write_text(json.dumps(manifest))
    found = report.collect(run, conditions.names(run))
    line = (
        f"{path}: edited after it was written (its seal does not match its content); rerun make masks"
        if sealed
        else f"{path}: both's detection is not as masks records it"
    )
    assert [s for s in found.stale if line in s]
    assert {r.method for r in found.detection if r.condition == "n20_s0"} == set(CL_METHODS.values()) - {"both"}
    out = stage("report", run.root).stdout
    assert line in out


def test_a_result_copied_over_another_seeds_is_not_counted_twice(run):
    seed0 = run.coteach("n20_s0", "both", "coteaching", 0)
    seed1 = seed0.with_name("seed1.json")
    copy_over(seed0, seed1)
    found = report.collect(run, conditions.names(run))
    assert [r.seed for r in found.accuracy if r.rows == "both"] == [0]
    assert any(
        s.startswith(f"{seed1} is stale: its manifest describes conditions/n20_s0/coteach/both/coteaching/seed0.json")
        for s in found.stale
    ), found.stale


def test_masks_refuse_a_psx_rewritten_while_they_are_made(run, monkeypatch):
    """combine --force rewrites psx.npy between two masks of one masks run: the masks after it would be computed
    from the psx read before it, so the run stops in one line, and the next run makes every mask from the new psx."""
    from pipeline import masks

    psx_path, produce, rewritten = run.psx("n20_s0"), store.produce, []
    manifest = store.verify(psx_path)
    new_psx = np.roll(files.load(psx_path), 1, axis=1)  # another valid psx, as other shards would combine to

    def produce_then_rewrite(artifact, **kwargs):
        made = produce(artifact, **kwargs)
        if kwargs["stage"] == "masks" and not rewritten:
            rewritten.append(artifact)
            produce(
                psx_path,
                root=run.root,
                stage="combine",
                config=manifest["config"],
                force=True,
                inputs={k: psx_path.parent / r["path"] for k, r in manifest["inputs"].items()},
                make=lambda: (new_psx, manifest["info"]),
            )
        return made

    monkeypatch.setattr(store, "produce", produce_then_rewrite)
    err = stage("masks", run.root, "--cond", "n20_s0", "--force", ok=False).stderr.strip()
    assert (
        len(err.splitlines()) == 1
        and f"its input {psx_path} changed while it was being made (or after this process read it)" in err
    )
    monkeypatch.setattr(store, "produce", produce)
    out = stage("masks", run.root, "--cond", "n20_s0").stdout
    noisy = files.load(run.labels("n20_s0"))
    for method, path in masks.mask_paths(run, "n20_s0").items():
        assert f"wrote: {path}" in out
        assert np.array_equal(
            store.read(path), masks.Finder(noisy, masks.checked_psx(new_psx, noisy, "", 10)).mask(method)
        )
