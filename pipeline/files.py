"""Files on disk: atomic writes (temp file, fsync, rename), the formats artifacts are stored in (.npy, .npz, .json,
bytes), memory-mapped and chunked reads, and checksums. Nothing here runs code from a file (``allow_pickle=False``,
JSON). What a file is and whether it may be used is ``store``'s (manifests and provenance).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
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


staged: list[Path] = []  # temp files ``staging`` made: ``store.produce`` removes those not renamed into place


def staging(path: Path) -> Path:
    """A new empty temp file beside ``path`` (normal file modes), to be written and then renamed over it. Its name
    says who writes it (``.<name>.<pid>-<start time>@<host>.XXXXXXXX.tmp``): see ``store.remove_leftovers``."""
    from pipeline.lock import started_at

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    owner = f"{os.getpid()}-{started_at(os.getpid()) or ''}@{socket.gethostname()}"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{owner}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; artifacts get normal file modes
    os.close(fd)
    staged.append(Path(tmp))
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


read_as: dict[str, str] = {}  # absolute path -> checksum of the bytes ``load`` last returned in this process


def load(path: Path, kind: str | None = None, mapped: bool = False) -> Any:
    """Load a file, eagerly, in the format ``kind`` (default: its suffix's, see ``save``); a missing or
    unreadable file, or one of another format, is a PipelineError. The checksum of the bytes read is
    remembered (``store.produce`` records inputs at it); a file that changes while it is read is refused.
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
    read_as[os.path.abspath(path)] = before
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
        read_as[os.path.abspath(self.path)] = self.before


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
