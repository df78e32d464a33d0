"""The docs name what exists: every repository path and every module or function they name in code spans, and
the layout in docs/stages.md lists each module of pipeline/, stages/, slurm/ and bench/ (and nothing else)."""

from __future__ import annotations

import importlib
import re

import pytest
from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
TOP = ("pipeline", "stages", "bench", "slurm", "tests", "docs", "data", ".ci")


def spans() -> list[tuple[str, str]]:
    """(code span, where) of every doc: inline spans (which may wrap across lines) and indented code lines."""
    found = []
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        where = doc.relative_to(ROOT)
        found += [(line.strip(), f"{where}:{i}") for i, line in enumerate(lines, 1) if line.startswith("    ")]
        prose = "\n".join(" " if line.startswith("    ") else line for line in lines)
        for m in re.finditer(r"`([^`]+)`", prose):
            found.append((" ".join(m.group(1).split()), f"{where}:{prose[: m.start()].count(chr(10)) + 1}"))
    return found


def named_paths() -> dict[str, str]:
    """{repository path: where first named}: words of code spans that start with a top-level folder of the
    repository; one with a placeholder (``gpu-<date>``) or a glob names its folder."""
    found: dict[str, str] = {}
    for text, where in spans():
        for word, more in re.findall(rf"(?<![\w./-])((?:{'|'.join(map(re.escape, TOP))})/[\w./-]*)([<*]?)", text):
            word = word.rstrip(".,:;)")
            found.setdefault(word.rsplit("/", 1)[0] if more else word, where)
    return found


def named_modules() -> dict[str, str]:
    """{dotted name under pipeline, stages, bench or slurm: where first named}, in the docs of the code as it is
    (docs/results/ are dated records of what was measured then)."""
    found: dict[str, str] = {}
    for text, where in spans():
        if where.startswith("docs/results/"):
            continue
        for name in re.findall(r"(?<![\w./-])((?:pipeline|stages|bench|slurm)(?:\.\w+)+)", text):
            found.setdefault(name, where)
    return found


@pytest.mark.parametrize("path", sorted(named_paths()))
def test_every_repository_path_a_doc_names_exists(path):
    assert (ROOT / path).exists(), f"{named_paths()[path]}: names {path}, which does not exist"


@pytest.mark.parametrize("name", sorted(named_modules()))
def test_every_module_a_doc_names_exists(name):
    parts = name.split(".")
    for i in range(len(parts), 0, -1):  # the longest module, then attributes of it
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            assert hasattr(obj, attr), f"{named_modules()[name]}: names {name}: {obj.__name__} has no {attr}"
            obj = getattr(obj, attr)
        return
    pytest.fail(f"{named_modules()[name]}: names {name}, no such module")


def layout() -> dict[str, set[str]]:
    """docs/stages.md's layout: {folder: the names it lists}, the comma-separated names after the entry's first
    colon up to its end (descriptions in parentheses dropped); ``x/`` a package, ``x.ext`` a file, ``x`` a module."""
    text = (ROOT / "docs" / "stages.md").read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    entries = re.findall(r"^    (\w+)/ +(.*?)(?=^    \S|\Z)", text, re.M | re.S)
    listed = {}
    for folder, body in entries:
        flat = " ".join(body.split())
        while (shorter := re.sub(r"\([^()]*\)", "", flat)) != flat:
            flat = shorter
        if ":" in flat:
            listed[folder] = {w.strip() for w in flat.split(":", 1)[1].rstrip(". ").split(",")}
    return listed


@pytest.mark.parametrize("folder", ["pipeline", "stages", "slurm", "bench"])
def test_the_layout_lists_each_module_once_and_only_those(folder):
    files = {p.name for p in (ROOT / folder).iterdir() if not p.name.startswith(("_", "."))}
    modules = {n[:-3] if n.endswith(".py") else f"{n}/" if (ROOT / folder / n).is_dir() else n for n in files}
    modules.discard("__pycache__/")
    listed = layout()[folder]
    assert listed == modules, (
        f"docs/stages.md's layout of {folder}/: missing {sorted(modules - listed)}, "
        f"names no such module {sorted(listed - modules)}"
    )


# The flags the docs give to other programs: sbatch (docs/slurm.md), pip (docs/benchmarks.md), ruff (README.md).
OTHERS = {"--array", "--exclusive", "--export", "--open-mode", "--output", "--requeue", "--signal"}
OTHERS |= {"--no-cache-dir", "--no-deps", "--no-index", "--target", "--check"}


def our_flags() -> set[str]:
    """Every flag of every entry point: the stages, slurm.submit, the bench harnesses."""
    import argparse

    from pipeline import workers
    from slurm import submit
    from stages import registry

    parsers = [workers.parser(stage) for stage in registry().values()] + [submit.parser()]
    for name in ("fold", "testset", "features", "scale", "real_noise", "evidence", "gpu_kit"):
        parsers.append(importlib.import_module(f"bench.{name}").parser())
    flags = set()
    while parsers:
        p = parsers.pop()
        for a in p._actions:
            flags.update(a.option_strings)
            if isinstance(a, argparse._SubParsersAction):
                parsers += a.choices.values()
    return flags


def test_every_flag_a_doc_names_is_an_option():
    """A flag in the docs (outside the dated results) is one of our entry points' options, or one of the few the
    docs pass to other programs."""
    ours = our_flags()
    unknown = {}
    for doc in DOCS:
        if "results" in doc.relative_to(ROOT).parts:
            continue
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", doc.read_text()):
            if flag not in ours | OTHERS:
                unknown.setdefault(flag, doc.relative_to(ROOT))
    assert not unknown, unknown
