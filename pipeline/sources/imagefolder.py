"""An ImageFolder root (a directory, or a ``.tar.gz`` of one): with ``train/`` and ``test/`` of class folders,
or class folders alone (then a stratified test fraction is held out), ordered exactly like
``torchvision.datasets.ImageFolder`` (class folder, then path as a string); symlinks are followed inside
the tree only; every class folder must hold an image. What no other source claims is read as one."""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path

import numpy as np

from pipeline import files
from pipeline.errors import PipelineError
from pipeline.sources.base import (
    IMG_EXTENSIONS,
    Dataset,
    Options,
    Source,
    check_classes,
    dataset,
    decode,
    hold_out,
    stack,
)


def walk(root: Path) -> tuple[list[str], set[str]]:
    """(files, folders) under ``root`` as relative '/' paths. Symlinks are followed while they stay in
    the tree; one that leaves it, is broken, or loops back to a folder above it is an error."""
    top = root.resolve()
    files, dirs = [], set()

    def visit(folder: Path, rel: str, above: tuple[Path, ...]) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            raise PipelineError(f"{folder}: cannot list it ({e.strerror or e})") from None
        for entry in entries:
            path, name = Path(entry.path), f"{rel}{entry.name}"
            real = path.resolve()
            if entry.is_symlink():
                if real != top and top not in real.parents:
                    raise PipelineError(
                        f"{path}: a symlink out of the dataset folder (to {real}); copy the files in instead"
                    )
                if not real.exists():
                    raise PipelineError(f"{path}: a broken symlink")
            if entry.is_dir(follow_symlinks=True):
                if real in above:
                    raise PipelineError(f"{path}: a symlink loop (back to {real})")
                dirs.add(name)
                visit(path, f"{name}/", above + (real,))
            elif entry.is_file(follow_symlinks=True):
                files.append(name)

    visit(root, "", (top,))
    return files, dirs


class Files:
    """Uniform listing/reading of an ImageFolder held in a directory or a tarball."""

    def __init__(self, path: Path):
        self.path = path
        self.blobs = None
        if path.is_dir():
            self.names, self.dirs = walk(path)
            return
        # A compressed tarball cannot seek cheaply: read it once, in archive order, into memory.
        try:
            with tarfile.open(path) as tar:
                members = tar.getmembers()
                links = [m.name for m in members if m.issym() or m.islnk()]
                if links:
                    raise PipelineError(f"{path}: holds links ({links[0]}, ...); pack the files themselves")
                blobs = {m.name: tar.extractfile(m).read() for m in members if m.isfile()}
                dirs = {m.name.rstrip("/") for m in members if m.isdir()}
        except (tarfile.TarError, OSError, EOFError) as e:
            raise PipelineError(f"{path}: {_what_file(path, e)}") from None
        # The archive may wrap the layout in a folder (cifar10/train/...): strip up to train/, or, without
        # train/, one folder that holds everything (wrapped/<class>/<image>).
        roots = [
            "" if n.startswith("train/") else n[: n.index("/train/") + 1]
            for n in blobs
            if n.startswith("train/") or "/train/" in n
        ]
        tops = {n.split("/")[0] for n in blobs}
        wrapped = len(tops) == 1 and all(n.count("/") >= 2 for n in blobs)
        prefix = min(roots, key=len) if roots else (f"{tops.pop()}/" if wrapped else "")
        self.blobs = {n[len(prefix) :]: b for n, b in blobs.items() if n.startswith(prefix)}
        self.names = list(self.blobs)
        parents = {"/".join(n.split("/")[:i]) for n in self.names for i in range(1, n.count("/") + 1)}
        self.dirs = {d[len(prefix) :] for d in dirs if d.startswith(prefix)} | parents

    def read(self, name: str) -> bytes:
        if self.blobs is None:
            return (self.path / name).read_bytes()
        return self.blobs[name]


def imagefolder_index(files: Files, split: str) -> tuple[list[str], list[tuple[int, str]]]:
    """(classes, [(class index, path relative to the class folder)]) in torchvision ImageFolder order;
    ``split`` "" for class folders at the top."""
    top = f"{split}/" if split else ""
    depth = top.count("/")
    classes = sorted(d.split("/")[depth] for d in files.dirs if d.count("/") == depth and d.startswith(top))
    if not classes:
        raise PipelineError(f"{files.path}: no class folders under {top or 'the top'} (expected {top}<class>/<image>)")
    entries: dict[str, list[str]] = {c: [] for c in classes}
    for name in files.names:
        parts = name.split("/")
        if (
            len(parts) >= depth + 2
            and name.startswith(top)
            and parts[depth] in entries
            and name.lower().endswith(IMG_EXTENSIONS)
        ):
            entries[parts[depth]].append("/".join(parts[depth + 1 :]))
    empty = [c for c in classes if not entries[c]]
    if empty:
        raise PipelineError(f"{files.path}/{top}{empty[0]}: class folder holds no images ({', '.join(IMG_EXTENSIONS)})")
    # os.walk visits a folder's files before its subfolders, both sorted: sort by (folder, file name).
    key = lambda rel: (os.path.dirname(rel), os.path.basename(rel))
    return classes, [(c, rel) for c, cls in enumerate(classes) for rel in sorted(entries[cls], key=key)]


def read(path: Path, options: Options) -> Dataset:
    decoder, test_fraction = options.decoder(), options.test_fraction
    files = Files(path)
    has_splits = any(d == "train" for d in files.dirs)
    if has_splits and test_fraction is not None:
        Options(test_fraction=test_fraction).only(set(), path, "it has train/ and test/ folders")
    # What the listing alone tells is checked before any image is decoded (nothing is staged for a refused source).
    index = {split: imagefolder_index(files, split) for split in (("train", "test") if has_splits else ("",))}
    if has_splits and index["test"][0] != index["train"][0]:
        raise PipelineError(f"{path}: train/ and test/ have different class folders")
    check_classes(next(iter(index.values()))[0], path)
    if options.audit_test and not has_splits:
        options.only({"--image-size", "--test-fraction", "--skip-bad"}, path, "it has no test/ folder to audit")
    found = {}
    for split, (classes, entries) in index.items():
        names = [f"{split}/{classes[c]}/{rel}" if split else f"{classes[c]}/{rel}" for c, rel in entries]
        images = decode([(f"{path}/{n}", lambda n=n: files.read(n)) for n in names], decoder, split or "all")
        keep = images.kept()
        if not len(keep):
            decoder.none_left(f"{path}/{split}" if split else path)
        found[split] = classes, [entries[i] for i in keep], (images, keep)
    if not has_splits:
        classes, entries, (images, keep) = found[""]
        y = np.array([c for c, _ in entries], np.int64)
        train, test = hold_out(y, test_fraction, path, classes)
        found = {
            split: (classes, [entries[i] for i in rows], (images, keep[rows]))
            for split, rows in (("train", train), ("test", test))
        }
    train_classes = found["train"][0]
    x = stack({s: found[s][2] for s in found})
    y = {s: [c for c, _ in found[s][1]] for s in found}
    stems = {s: [os.path.splitext(rel)[0] for _, rel in found[s][1]] for s in found}
    ids = {s: [f"{train_classes[c]}/{stem}" for (c, _), stem in zip(found[s][1], stems[s])] for s in found}
    return dataset(x, y, ids, stems, train_classes, path, options.audit_test)


def _what_file(path: Path, error: Exception) -> str:
    """Why ``path`` is no dataset source, by what its first bytes say it is (one line)."""
    with open(path, "rb") as f:
        head = f.read(8)
    kinds = [
        (
            b"PK\x03\x04",
            "a zip archive, not a source: pass a .tar.gz of an ImageFolder, or unpack it and pass the folder",
        ),
        (
            files.MAGIC[".npy"],
            "a NumPy .npy file, not a dataset source (a labels or psx file belongs to noise or masks)",
        ),
        (b"\x89PNG", "a single image, not a dataset source: pass the folder of class folders"),
        (b"\xff\xd8\xff", "a single image, not a dataset source: pass the folder of class folders"),
        (b"\x1f\x8b", f"a gzip file that is not a readable tar archive ({str(error).splitlines()[0]})"),
    ]
    for magic, what in kinds:
        if head.startswith(magic):
            return what
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "a text file, not a source: a CSV source's name ends in .csv and its header names path and label"
    return "not a directory, a .csv or a readable tar archive of an ImageFolder"


def listing_fingerprint(path: Path, names: list[str] | None = None, folder: Path | None = None, head: str = "") -> str:
    """A folder's contents, cheaply: the listing of (path, size, mtime) of its files (``names`` under ``folder``:
    those only), after ``head``."""
    h = hashlib.sha256()
    if head:
        h.update(head.encode())
    names, folder = (sorted(walk(path)[0]), path) if names is None else (names, folder)
    for name in names:
        try:
            st = os.stat(folder / name)
        except (OSError, ValueError):  # missing, or a NUL in the name: the source's reader names the row
            continue
        h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return "listing:" + h.hexdigest()


def fingerprint(path: Path) -> str:
    """A tarball's sha256, a folder's listing."""
    return files.checksum(path) if path.is_file() else listing_fingerprint(path)


SOURCE = Source("ImageFolder", claims=lambda path: True, read=read, fingerprint=fingerprint)
