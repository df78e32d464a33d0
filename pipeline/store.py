"""The artifact store: every stage reads and writes its artifacts through it.

An artifact ``X`` is a file with a manifest ``X.manifest.json`` beside it: what it is (its path in
the run directory, which names its stage's task: condition, fold, method, learner, seed), the stage
that made it, the artifact's sha256, its inputs (other artifacts of the run, by path relative to ``X``
and sha256), the config that made it, and facts about the run (info, versions, wall time, device).
Writes are atomic (temp file, fsync, rename): the artifact first, its manifest last.

``verify`` is the one rule for "may this be used": the file is the artifact its manifest describes
(read where it was made, not copied over another), its bytes match, and every input is still the
file it was made from and is itself verified, up the chain. An input's recorded checksum is that of
the bytes the maker read: ``load`` remembers what it returned, and ``produce`` refuses to record an
input that changed after this process read it. ``is_current`` adds "made
from these inputs with this config"; ``produce`` makes an artifact unless it is current; ``read``
verifies, then loads.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import enum
import glob
import hashlib
import importlib.metadata
import io
import json
import os
import platform
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from pipeline.errors import PipelineError

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write ``path`` via a temp file in the same folder, fsync, then rename over it. A failure
    (full disk, read-only or missing folder) leaves the old file and no temp file behind."""
    path, tmp = Path(path), None
    try:
        tmp = staging(path)
        with open(tmp, "wb") as f:
            write(f)
        _commit(tmp, path)
        tmp = None
    except OSError as e:
        raise PipelineError(f"{path}: cannot write it ({e.strerror or e})") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


_staged: list[Path] = []  # the temp files made since ``produce`` began: removed unless renamed into place


def staging(path: Path) -> Path:
    """A new empty temp file beside ``path`` (normal file modes), to be written and then renamed over it. Its name
    says who writes it (``.<name>.<pid>-<start time>@<host>.XXXXXXXX.tmp``): see ``remove_leftovers``."""
    from pipeline.lock import started_at

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    owner = f"{os.getpid()}-{started_at(os.getpid()) or ''}@{socket.gethostname()}"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{owner}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; artifacts get normal file modes
    os.close(fd)
    _staged.append(Path(tmp))
    return Path(tmp)


def _commit(tmp: Path, path: Path) -> None:
    """fsync ``tmp``, rename it over ``path``, fsync the folder."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclasses.dataclass(frozen=True)
class Staged:
    """What a ``make`` returns for an artifact it wrote itself, in bounded memory, to ``path`` (from ``staging``):
    ``save`` renames it into place."""

    path: Path


def save(path: Path, value: Any) -> None:
    """Write ``value`` atomically in the format ``path``'s suffix names: ``.npy`` an array, ``.npz`` a
    dict of arrays, ``.json`` a JSON value, anything else bytes; a ``Staged`` file is renamed into place."""
    kind = Path(path).suffix
    if isinstance(value, Staged):
        try:
            _commit(value.path, Path(path))
        except OSError as e:
            Path(value.path).unlink(missing_ok=True)
            raise PipelineError(f"{path}: cannot write it ({e.strerror or e})") from None
    elif kind == ".npy":
        atomic_write(path, lambda f: np.save(f, np.ascontiguousarray(value), allow_pickle=False))
    elif kind == ".npz":
        atomic_write(path, lambda f: _write_npz(f, value))
    elif kind == ".json":
        atomic_write(path, lambda f: f.write((json.dumps(value, indent=1, sort_keys=True) + "\n").encode()))
    else:
        atomic_write(path, lambda f: f.write(value))


NPZ_CHUNK_BYTES = 1 << 26  # bytes of an array written to an .npz at a time


def _write_npz(f, arrays: dict) -> None:
    """``np.savez``'s file (an uncompressed zip of ``.npy`` members), each array copied a chunk at a time: one given
    as ``Rows`` or memory-mapped (a dataset larger than memory) is read as it is written, never whole."""
    import zipfile

    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        for name, value in arrays.items():
            with z.open(f"{name}.npy", "w", force_zip64=True) as member:
                if type(value) is np.ndarray:
                    np.lib.format.write_array(member, value, allow_pickle=False)
                    continue
                dtype, shape = np.dtype(value.dtype), tuple(value.shape)
                np.lib.format.write_array_header_1_0(
                    member, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
                )
                rows = max(1, NPZ_CHUNK_BYTES // max(1, int(np.prod(shape[1:])) * dtype.itemsize))
                for start in range(0, shape[0], rows):
                    member.write(np.ascontiguousarray(value[start : start + rows]).tobytes())


_read_as: dict[str, str] = {}  # absolute path -> checksum of the bytes ``load`` last returned in this process


def load(path: Path, kind: str | None = None, mapped: bool = False) -> Any:
    """Load a file, eagerly, in the format ``kind`` (default: its suffix's, see ``save``); a missing or
    unreadable file, or one of another format, is a PipelineError. The checksum of the bytes read is
    remembered (``produce`` records inputs at it); a file that changes while it is read is refused.
    ``mapped``: an ``.npy`` is memory-mapped, not read (pages come from disk as they are touched), copy-on-write
    so that it is writeable: numpy copies a read-only array whole in ``argmax`` and friends. Nothing is written
    back, and an artifact is replaced by a rename, never in place, so the mapping keeps the bytes checked here."""
    path = Path(path)
    kind = kind or path.suffix
    try:
        before = checksum(path)
        value = _parse(path, kind, mapped)
        if checksum(path) != before:
            raise PipelineError(f"{path}: changed while it was being read; run again")
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except (ValueError, OSError, EOFError, KeyError, UnicodeDecodeError) as e:
        raise PipelineError(f"{path}: not a readable {kind or 'file'} ({e})") from None
    _read_as[os.path.abspath(path)] = before
    return value


def _parse(path: Path, kind: str, mapped: bool = False) -> Any:
    if kind in (".npy", ".npz"):
        _check_format(path, kind)
        if kind == ".npy":
            return np.load(path, allow_pickle=False, mmap_mode="c" if mapped else None)
        with np.load(path, allow_pickle=False) as z:
            big = _mappable_members(path) if mapped else {}
            return {k: big[k] if k in big else z[k] for k in z.files}
    if kind == ".json":
        return json.loads(path.read_text())
    return path.read_bytes()


MAP_MIN_BYTES = 1 << 20  # members of an .npz smaller than this are read, not mapped


def _mappable_members(path: Path) -> dict[str, np.ndarray]:
    """The large members of an uncompressed ``.npz`` (what ``save`` writes), memory-mapped in place (copy-on-write):
    ``{name: array}``. A zip stores a member's bytes whole after its local header, so an array's data starts at
    the header's end plus the ``.npy`` header."""
    import struct
    import zipfile

    mapped = {}
    with zipfile.ZipFile(path) as z, open(path, "rb") as f:
        for info in z.infolist():
            if (
                info.compress_type != zipfile.ZIP_STORED
                or info.file_size < MAP_MIN_BYTES
                or not info.filename.endswith(".npy")
            ):
                continue
            f.seek(info.header_offset)
            local = f.read(30)
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            f.seek(info.header_offset + 30 + name_len + extra_len)
            version = np.lib.format.read_magic(f)
            read_header = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }.get(version)
            if read_header is None:
                continue
            shape, fortran, dtype = read_header(f)
            if dtype.hasobject:
                continue
            mapped[info.filename[: -len(".npy")]] = np.memmap(
                path, dtype=dtype, mode="c", offset=f.tell(), shape=shape, order="F" if fortran else "C"
            )
    return mapped


class RowChunks:
    """An ``.npy`` array's ``shape`` and ``dtype`` (read from its header), iterated as ``(first row, rows)``, whole
    rows of about ``entries`` values at a time, read from the file, not mapped: memory stays one chunk however
    large the file. Checked like ``load``: a file that changes while it is read is refused; its checksum is
    remembered."""

    def __init__(self, path: Path, entries: int):
        self.path, self.entries = Path(path), entries
        with self._errors():
            self.before = checksum(self.path)
            _check_format(self.path, ".npy")
            with open(self.path, "rb") as f:
                version = np.lib.format.read_magic(f)
                header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
                if version not in header:
                    raise ValueError(f".npy format version {version}")
                self.shape, fortran, self.dtype = header[version](f)
                self.offset = f.tell()
            if fortran or self.dtype.hasobject or not self.shape:
                raise ValueError(f"expected a C-ordered array of numbers, got shape {self.shape} {self.dtype}")

    @contextlib.contextmanager
    def _errors(self):
        try:
            yield
        except FileNotFoundError:
            raise PipelineError(f"{self.path}: file not found") from None
        except (ValueError, OSError, EOFError) as e:
            raise PipelineError(f"{self.path}: not a readable .npy ({e})") from None

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        per_row = int(np.prod(self.shape[1:]))
        rows = max(1, self.entries // max(1, per_row))
        with self._errors(), open(self.path, "rb") as f:
            f.seek(self.offset)
            for start in range(0, self.shape[0], rows):
                count = min(rows, self.shape[0] - start)
                chunk = np.fromfile(f, self.dtype, count * per_row)
                if len(chunk) != count * per_row:
                    raise EOFError("the file is shorter than its header says")
                yield start, chunk.reshape(count, *self.shape[1:])
        if checksum(self.path) != self.before:
            raise PipelineError(f"{self.path}: changed while it was being read; run again")
        _read_as[os.path.abspath(self.path)] = self.before


MAGIC = {".npy": b"\x93NUMPY", ".npz": b"PK\x03\x04"}  # numpy's header; a zip archive's


def _check_format(path: Path, kind: str) -> None:
    """A PipelineError naming what ``path`` is when it is not the ``kind`` (.npy or .npz) its name says
    (numpy reads either whatever the suffix, and calls any other file 'pickled data')."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(MAGIC[kind]):
        return
    found = next((f"an {k} file" for k, magic in MAGIC.items() if head.startswith(magic)), None)
    if found is None:
        found = "a text file" if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head) else "not a NumPy file"
    raise PipelineError(f"{path}: {found}, not the {kind} file expected here")


_checksums: dict[tuple, str] = {}


def checksum(path: Path) -> str:
    """sha256 of a file's bytes, memoised per (path, inode, size, mtime, ctime) within this process (a copy
    that keeps the old mtime still changes the ctime)."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _checksums:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _checksums[key] = "sha256:" + h.hexdigest()
    return _checksums[key]


def manifest_path(artifact: Path) -> Path:
    return Path(f"{artifact}.manifest.json")


def ckpt_path(artifact: Path) -> Path:
    """Where a training stage keeps the state it resumes ``artifact``'s making from."""
    return Path(f"{artifact}.ckpt")


def normalise(obj: Any) -> Any:
    """Round-trip through JSON so tuples, numpy scalars and paths compare like stored values."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def read_manifest(artifact: Path) -> dict:
    mpath = manifest_path(artifact)
    try:
        manifest = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise PipelineError(
            f"{artifact}: has no manifest ({mpath.name}): not made by this pipeline, or not finished"
        ) from None
    except (ValueError, UnicodeDecodeError):
        raise PipelineError(f"{mpath}: not valid JSON") from None
    ok = isinstance(manifest, dict) and {"stage", "checksum", "inputs", "config", "info"} <= manifest.keys()
    if not ok or not all(isinstance(r, dict) and {"path", "checksum"} <= r.keys() for r in manifest["inputs"].values()):
        raise PipelineError(f"{mpath}: not a manifest of this pipeline")
    if "seal" in manifest and manifest["seal"] != _seal(manifest):  # unsealed: an older run's, read as it is
        raise PipelineError(
            f"{mpath}: edited after it was written (its seal does not match its content); "
            f"rerun make {manifest['stage']} to remake {Path(artifact).name}"
        )
    return manifest


def _seal(manifest: dict) -> str:
    """A checksum of a manifest's own content (all but its seal)."""
    body = json.dumps({k: v for k, v in manifest.items() if k != "seal"}, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(body.encode()).hexdigest()


def write_manifest(artifact: Path, manifest: dict) -> None:
    """Save ``artifact``'s manifest sealed (``_seal``): a reader trusts it only as its writer wrote it, and an
    artifact whose manifest was edited is stale (remade on the next run, its info never read)."""
    manifest = normalise(manifest)
    save(manifest_path(artifact), {**manifest, "seal": _seal(manifest)})


def verify(artifact: Path, _depth: int = 0) -> dict:
    """The manifest of ``artifact`` once its bytes and every input up the chain check out; otherwise a
    PipelineError naming the deepest broken link and the stage that redoes it."""
    artifact = Path(artifact)
    if not artifact.is_file():
        raise PipelineError(f"{artifact}: missing")
    if _depth > 20:
        raise PipelineError(f"{artifact}: its manifests' inputs form a cycle")
    manifest = read_manifest(artifact)
    redo = f"rerun make {manifest['stage']} (then the stages after it)"
    recorded = PurePosixPath(manifest.get("artifact") or artifact.name)  # what it is: where it was made
    if Path(os.path.abspath(artifact)).parts[-len(recorded.parts) :] != recorded.parts:
        raise PipelineError(
            f"{artifact} is stale: its manifest describes {recorded}, another artifact (copied over this one?); {redo}"
        )
    if manifest["checksum"] != checksum(artifact):
        raise PipelineError(f"{artifact}: changed since it was made (checksum differs from its manifest); {redo}")
    sources = {name: Path(os.path.normpath(artifact.parent / rec["path"])) for name, rec in manifest["inputs"].items()}
    for name, source in sources.items():  # deepest cause first: a stale input names what to redo
        try:
            if not manifest["inputs"][name].get("external") or manifest_path(source).exists():
                verify(source, _depth + 1)  # an outside file that is some run's artifact: its chain too
            elif not source.is_file():
                raise PipelineError(f"{source}: gone since it was read")
        except PipelineError as e:
            raise PipelineError(f"{artifact} is stale: {e}") from None
    for name, source in sources.items():
        if checksum(source) != manifest["inputs"][name]["checksum"]:
            raise PipelineError(f"{artifact} is stale: {source} changed after it was made; {redo}")
    return manifest


def read(artifact: Path) -> Any:
    """The artifact's contents after ``verify``."""
    verify(artifact)
    return load(artifact)


class External(type(Path())):
    """An input that is a file a config names (probabilities made elsewhere, a weights file, a condition's label
    file). Recorded by its absolute path and checksum like any input, so what was made from it, and everything made
    from that, is stale once it changes; where it is some run's artifact (a manifest beside it), its chain too."""


def _records(artifact: Path, inputs: dict[str, Path]) -> dict[str, dict]:
    base = os.path.abspath(Path(artifact).parent)

    def record(p: Path) -> dict:
        if isinstance(p, External):
            return {"path": os.path.abspath(p), "checksum": checksum(p), "external": True}
        return {"path": os.path.relpath(os.path.abspath(p), base), "checksum": checksum(p)}

    return {name: record(p) for name, p in sorted(inputs.items())}


def is_current(artifact: Path, inputs: dict[str, Path], config: dict) -> bool:
    """True when ``artifact`` verifies and was made from exactly these inputs with this config."""
    try:
        manifest = verify(artifact)
        return manifest["config"] == normalise(config) and manifest["inputs"] == _records(artifact, inputs)
    except (PipelineError, FileNotFoundError):
        return False


def check_made_from(artifact: Path, manifest: dict, inputs: dict[str, Path]) -> None:
    """A PipelineError unless ``artifact`` (with its verified ``manifest``) was made from exactly ``inputs``, the
    files its stage reads for it now (an artifact of an older layout read others: intact, yet not current)."""
    now, then = _records(artifact, inputs), manifest["inputs"]
    if now != then:
        differ = ", ".join(sorted(k for k in set(now) | set(then) if now.get(k) != then.get(k)))
        raise PipelineError(
            f"{artifact} is stale: made from other inputs than make {manifest['stage']} reads for it now "
            f"({differ}); rerun make {manifest['stage']}"
        )


def same_config(configs: dict[str, dict], what: str) -> dict:
    """The config shared by every entry of ``{name: config}``; otherwise a PipelineError naming the odd
    one(s) out (those outside the largest group) and the keys they differ in."""
    groups: dict[str, list[str]] = {}
    for name, config in configs.items():
        groups.setdefault(json.dumps(normalise(config), sort_keys=True), []).append(name)
    if len(groups) <= 1:
        return normalise(next(iter(configs.values()), {}))
    ranked = sorted(groups.values(), key=len, reverse=True)
    main, odd = configs[ranked[0][0]], ranked[1][0]
    diff = ", ".join(
        f"{k}={configs[odd].get(k)!r} (others: {main.get(k)!r})"
        for k in sorted(set(main) | set(configs[odd]))
        if configs[odd].get(k) != main.get(k)
    )
    others = sum(len(g) for g in ranked[1:])
    raise PipelineError(
        f"{what}: {odd} was made with {diff}"
        + (f" ({others} such)" if others > 1 else "")
        + f"; {len(ranked[0])} other(s) agree: redo the odd one(s) with the same options, or remove them"
    )


class Outcome(enum.Enum):
    """What ``produce`` did with an artifact; the value is the word a stage's log line starts with."""

    MADE = "wrote"
    CURRENT = "current"
    SKIPPED = "skipped"  # another process holds its lock and is making it

    def __bool__(self):
        raise TypeError("compare an Outcome with Outcome.MADE, not its truth value")

    @classmethod
    def of(cls, outcomes) -> Outcome:
        """One outcome for several artifacts: SKIPPED if any was, else MADE if any was, else CURRENT."""
        outcomes = list(outcomes)
        return next((o for o in (cls.SKIPPED, cls.MADE) if o in outcomes), cls.CURRENT)


class Pending(Exception):
    """Raised by ``produce`` within ``dry_run`` at the first artifact it would make."""


_dry = contextvars.ContextVar("dry_run", default=False)


@contextlib.contextmanager
def dry_run():
    """Within it ``produce`` makes, locks and removes nothing: it returns CURRENT for a current artifact and
    raises ``Pending`` for any other (how a stage's task says whether it has work to do)."""
    token = _dry.set(True)
    try:
        yield
    finally:
        _dry.reset(token)


def in_dry_run() -> bool:
    return _dry.get()


def remove_leftovers(artifact: Path, owned: bool = False) -> None:
    """Remove the temp files of ``artifact``, its manifest and its checkpoint that a killed write left, never a live
    writer's. ``owned`` (this process holds the artifact's lock, ``lock.TaskLock``): nobody else writes them, so all
    of them. Otherwise by the writer its name records (``staging``): on this host, those whose process is gone;
    elsewhere (or with no writer in the name), those untouched for ``lock.STALE_S``, the rule of a lock's heartbeat."""
    from pipeline.lock import STALE_S, alive

    for path in (Path(artifact), manifest_path(artifact), ckpt_path(artifact)):
        named = re.compile(rf"\.{re.escape(path.name)}(?:\.(?:(\d+)-(\d*)@(.+)\.)?[^.]+)?\.tmp")
        for tmp in path.parent.glob(f".{glob.escape(path.name)}*.tmp"):
            m = named.fullmatch(tmp.name)
            if m is None:
                continue
            pid, started, host = m.groups()
            try:
                if owned or (
                    not alive(int(pid), int(started) if started else None)
                    if host == socket.gethostname()
                    else time.time() - tmp.stat().st_mtime > STALE_S
                ):
                    tmp.unlink()
            except FileNotFoundError:
                pass


def _check_finite(artifact: Path, value: Any) -> None:
    """Nothing non-finite is recorded as finished: every float array made for ``artifact`` (a staged ``.npy``
    included) is checked, a chunk at a time, before it is written."""
    if isinstance(value, Staged) and Path(artifact).suffix == ".npy":
        value = np.load(value.path, mmap_mode="r", allow_pickle=False)
    arrays = value if isinstance(value, dict) else {"": value}
    for name, a in arrays.items():
        if not (isinstance(a, np.ndarray) and a.dtype.kind in "fc"):
            continue
        flat = a.reshape(-1)
        step = max(1, NPZ_CHUNK_BYTES // a.itemsize)
        bad = sum(int(np.count_nonzero(~np.isfinite(flat[i : i + step]))) for i in range(0, flat.size, step))
        if bad:
            raise PipelineError(
                f"{artifact}: {bad} of {flat.size} values{f' in {name}' if name else ''} are NaN or infinite; "
                "nothing was recorded"
            )


def produce(
    artifact: Path,
    *,
    root: Path,
    stage: str,
    inputs: dict[str, Path],
    config: dict,
    make: Callable[[], tuple[Any, dict]],
    force: bool = False,
    device: str = "cpu",
    lock: bool = False,
) -> Outcome:
    """Make ``artifact`` (a file under the run directory ``root``, whose path there says what it is) unless
    it is current (``force``: always). ``make()`` returns (contents, info); every input must verify first,
    and be the bytes ``make`` read (if this process read it at all). SKIPPED if another process holds its
    lock (``lock``: claim it while making, see ``lock.TaskLock``)."""
    from pipeline.lock import TaskLock

    artifact = Path(artifact)
    if in_dry_run():
        if force or not is_current(artifact, inputs, config):
            raise Pending(artifact)
        return Outcome.CURRENT
    with TaskLock(artifact) if lock else contextlib.nullcontext() as claim:
        if claim is not None and not claim.held:
            print(f"skipped: {artifact} is being made by {claim.owner}", flush=True)
            return Outcome.SKIPPED
        remove_leftovers(artifact, owned=claim is not None)
        if not force and is_current(artifact, inputs, config):
            ckpt_path(artifact).unlink(missing_ok=True)  # left by a kill between the manifest and its removal below
            return Outcome.CURRENT
        for source in inputs.values():
            if not isinstance(source, External) or manifest_path(source).exists():
                verify(source)
        made_from = _records(artifact, inputs)
        if force:
            ckpt_path(artifact).unlink(missing_ok=True)
        start = time.perf_counter()
        _staged.clear()
        try:
            value, info = make()
            _check_finite(artifact, value)
            now = _records(artifact, inputs)
            for name, source in inputs.items():
                held = _read_as.get(os.path.abspath(source))
                if now[name] != made_from[name] or held not in (None, made_from[name]["checksum"]):
                    raise PipelineError(
                        f"{artifact}: its input {source} changed while it was being made (or after "
                        f"this process read it); nothing was written: run make {stage} again"
                    )
            save(artifact, value)
        finally:
            for tmp in _staged:
                tmp.unlink(missing_ok=True)
            _staged.clear()
        write_manifest(
            artifact,
            {
                "artifact": _made_as(artifact, root),
                "stage": stage,
                "checksum": checksum(artifact),
                "inputs": made_from,
                "config": normalise(config),
                "info": normalise(info),
                "wall_s": round(time.perf_counter() - start, 3),
                "device": device,
                "host": socket.gethostname(),
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "versions": _versions(),
            },
        )
        ckpt_path(artifact).unlink(missing_ok=True)
    return Outcome.MADE


def _made_as(artifact: Path, root: Path) -> str:
    """What an artifact is: its path relative to the run directory ``root`` (e.g. conditions/n20_s0/masks/both.npy)."""
    rel = Path(os.path.relpath(os.path.abspath(artifact), os.path.abspath(root)))
    if rel.parts[0] == "..":
        raise ValueError(f"{artifact} is not under the run directory {root}")
    return rel.as_posix()


def _versions() -> dict[str, str]:
    """The versions installed of Python and of the packages that compute results."""
    out = {"python": platform.python_version()}
    for name in ("numpy", "torch", "pytorch-lightning", "cleanlab"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out
