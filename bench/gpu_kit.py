"""The kit for the one GPU call, and its rehearsal here (``make gpu-kit``, ``make gpu-rehearsal``).

    python -m bench.gpu_kit kit          # .whl/ and .cache/shared/: what the GPU machine lacks; prints carry and command
    python -m bench.gpu_kit rehearse     # that command, here, TINY, from a copy of what travels, in a bare venv

The GPU machine (``bench/gpu_machine.txt``) has Python 3.12 with torch, Lightning, scikit-learn, pandas ...
but no cleanlab or submitit and no network. ``kit`` walks the pipeline's requirements (pyproject.toml) through
the installed distributions' metadata, stopping at what the machine has, and downloads wheels of the rest
(the versions installed here) for Python 3.12, manylinux x86-64 or pure Python, into ``.whl/``; it copies the
CIFAR-10 tarball and the paper's psx into ``.cache/shared/data``, checks the working tree plus the kit against
the device's 64 MiB, and prints the folders to carry and the exact command (at most 2,000 characters).

``rehearse`` copies only what would travel (``git ls-files -co --exclude-standard`` plus the kit) to a
temporary folder, makes a virtualenv holding only the GPU machine's distributions (linked from this
machine's .venv) and runs the exact command there with ``EVIDENCE_ARGS=--tiny`` (its /tmp/site and
/tmp/evidence-run are emptied before and after): a missing file or wheel fails here, not on the GPU. It
checks what ``$OUT`` holds against what the device returns.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from packaging.requirements import Requirement

from pipeline import cli
from pipeline.errors import PipelineError

ROOT = Path(__file__).resolve().parent.parent
WHEELS, SHARED = ".whl", ".cache/shared"
CARRY = (WHEELS, SHARED)
SOURCE = ROOT.parent / "shared" / "data"
DATA_FILES = (
    "cifar10-jpeg.tar.gz",
    "cl-paper/psx",
)  # the tarball; the paper's psx (bench.fold, the report's detection)
LIMIT_BYTES = 64 * 2**20  # the working tree plus carried paths
COMMAND_CHARS = 2000
OUT_FILES, OUT_BYTES, OUT_DEPTH = 8, 16 * 2**20, 2
GPU_ENV = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "implementation_name": "cpython",
    "os_name": "posix",
    "extra": "",
}
COMMAND = (
    "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "
    f"{WHEELS}/*.whl || exit 3; export PYTHONPATH=/tmp/site; "
    f'python3 -m bench.evidence --require-shared --shared {SHARED} --run-dir /tmp/evidence-run --out "$OUT" $EVIDENCE_ARGS'
)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def gpu_machine() -> set[str]:
    """The distributions the GPU machine has (normalised names)."""
    lines = (ROOT / "bench" / "gpu_machine.txt").read_text().splitlines()
    return {_norm(line.strip()) for line in lines if line.strip() and not line.startswith("#")}


def missing() -> dict[str, str]:
    """``{distribution: version installed here}`` the pipeline needs and the GPU machine lacks, dependencies included."""
    import tomllib

    have, todo, need = (
        gpu_machine(),
        list(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]),
        {},
    )
    while todo:
        req = Requirement(todo.pop())
        name = _norm(req.name)
        if name in have or name in need or (req.marker and not req.marker.evaluate(GPU_ENV)):
            continue
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            raise PipelineError(f"{req.name} is not installed here (make setup first)") from None
        need[name] = dist.version
        todo += dist.requires or []
    return dict(sorted(need.items()))


def _tree_bytes() -> int:
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    return sum((ROOT / f).stat().st_size for f in files.decode().split("\0") if f and (ROOT / f).is_file())


def _bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def kit() -> None:
    wheels = ROOT / WHEELS
    for folder in (wheels, ROOT / SHARED):
        if folder.exists() and not folder.is_dir():
            raise PipelineError(
                f"{folder}: a file where the kit's folder goes; move it away and run make gpu-kit again"
            )
    need = missing()
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir()
    pins = [f"{name}=={version}" for name, version in need.items()]
    got = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.12",
            "--implementation",
            "cp",
            "--platform",
            "manylinux2014_x86_64",
            "-d",
            str(wheels),
            *pins,
        ],
        capture_output=True,
        text=True,
    )
    if got.returncode != 0:
        raise PipelineError(
            f"pip could not fetch {' '.join(pins)} for Python 3.12: put their wheels in {WHEELS}/ "
            f"by hand ({got.stderr.strip().splitlines()[-1] if got.stderr.strip() else 'no output'})"
        )
    for rel in DATA_FILES:
        src, dst = SOURCE / rel, ROOT / SHARED / "data" / rel
        if not src.exists():
            raise PipelineError(f"{src}: missing (the kit carries it from ../shared)")
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    sizes = {"tree": _tree_bytes(), **{c: _bytes(ROOT / c) for c in CARRY}}
    total = sum(sizes.values())
    print("wheels: " + ", ".join(sorted(p.name for p in wheels.glob("*.whl"))))
    print(
        "sizes: "
        + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in sizes.items())
        + f"; total {total / 2**20:.1f} of 64 MiB"
    )
    if total > LIMIT_BYTES:
        raise PipelineError(f"the working tree plus the kit is {total / 2**20:.1f} MiB, over the device's 64 MiB")
    if len(COMMAND) > COMMAND_CHARS:
        raise PipelineError(f"the command is {len(COMMAND)} characters, over {COMMAND_CHARS}")
    print(f"carry: {list(CARRY)}")
    print(f"command ({len(COMMAND)} characters):\n{COMMAND}")


def _bare_venv(where: Path) -> Path:
    """A virtualenv whose site-packages links only the GPU machine's distributions from this one's."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    site = next((where / "lib").glob("python3*/site-packages"))
    have, linked = gpu_machine(), set()
    for dist in md.distributions():
        if _norm(dist.metadata["Name"]) not in have or dist.files is None:
            continue
        base = Path(dist.locate_file(""))
        for top in {Path(str(f)).parts[0] for f in dist.files}:  # its packages, modules and .dist-info
            if top == ".." or top in linked or (site / top).exists():
                continue
            if (base / top).exists():
                (site / top).symlink_to(base / top)
                linked.add(top)
    return where / "bin"


def check_out(out: Path) -> list[str]:
    """What the device would not return from ``out``: too many or too large files, folders too deep, odd names."""
    files = [p for p in out.rglob("*") if p.is_file()]
    problems = [f"{len(files)} files (at most {OUT_FILES})"] if len(files) > OUT_FILES else []
    for p in files:
        rel = p.relative_to(out)
        if p.stat().st_size > OUT_BYTES:
            problems.append(f"{rel}: {p.stat().st_size / 2**20:.1f} MiB (at most 16)")
        if len(rel.parts) - 1 > OUT_DEPTH:
            problems.append(f"{rel}: more than {OUT_DEPTH} folders down")
        if not all(re.fullmatch(r"[A-Za-z0-9._-]+", part) for part in rel.parts):
            problems.append(f"{rel}: a name the device does not return")
    return problems


def rehearse() -> None:
    for c in CARRY:
        if not (ROOT / c).exists():
            raise PipelineError(f"{c}: missing; run make gpu-kit first")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-rehearsal-") as tmp:
        tmp = Path(tmp)
        tree, out = tmp / "tree", tmp / "out"
        files = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        for f in [f for f in files.decode().split("\0") if f and (ROOT / f).is_file()]:
            (tree / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, tree / f)
        for c in CARRY:
            shutil.copytree(ROOT / c, tree / c)
        out.mkdir()
        bin_dir = _bare_venv(tmp / "venv")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_"))}
        env.update(PATH=f"{bin_dir}:{env.get('PATH', '')}", OUT=str(out), EVIDENCE_ARGS="--tiny", PIP_NO_INDEX="1")
        scratch = [Path("/tmp/site"), Path("/tmp/evidence-run"), Path("/tmp/evidence-run-work")]  # the command's own
        for d in scratch:
            shutil.rmtree(d, ignore_errors=True)
        try:
            proc = subprocess.run(["bash", "-c", COMMAND], cwd=tree, env=env)
        finally:
            for d in scratch:
                shutil.rmtree(d, ignore_errors=True)
        problems = check_out(out)
        seconds = time.perf_counter() - start
        print(
            f"rehearsal: exit status {proc.returncode} in {seconds:.0f} s; $OUT: {sorted(p.name for p in out.rglob('*'))}"
        )
        if proc.returncode != 0 or problems:
            raise PipelineError("the rehearsal failed" + "".join(f"; {p}" for p in problems))


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("kit", "rehearse"), help="assemble the kit, or rehearse the call with it")
    return p


if __name__ == "__main__":
    cli.main(lambda: {"kit": kit, "rehearse": rehearse}[parser().parse_args().what]())
