"""torch.compile's on-disk cache (TorchInductor's): repaired before a compile, named when it still fails.

A compile killed mid-way (a signal, a time limit) can leave a library in the cache that is empty or cut
short; inductor finds the file, skips building it and fails to load it, in every later process
(``ImportError: ... .so: file too short``). ``repair`` removes such files before compiling, so the next
compile builds them again. A file whose compile lock another process holds is being built right now
and is left alone: workers compiling at once on one machine do not break each other.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.errors import PipelineError

ELF_MAGIC = b"\x7fELF"


def cache_dir() -> Path:
    """Where inductor keeps its compiled libraries (``TORCHINDUCTOR_CACHE_DIR``, or its default)."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir as inductor_cache_dir

    return Path(inductor_cache_dir())


def intact(library: Path) -> bool:
    """Whether a shared library is whole: an ELF file at least as long as its own section header table
    says (the table comes last, so a file cut short ends before it)."""
    with open(library, "rb") as f:
        head = f.read(64)
    if len(head) < 64 or not head.startswith(ELF_MAGIC):
        return False
    if head[4] != 2:  # not 64-bit: the magic is all we check
        return True
    order = "little" if head[5] == 1 else "big"
    shoff = int.from_bytes(head[0x28:0x30], order)
    shentsize, shnum = int.from_bytes(head[0x3A:0x3C], order), int.from_bytes(head[0x3C:0x3E], order)
    return os.path.getsize(library) >= shoff + shentsize * shnum


def repair(root: Path | None = None) -> list[Path]:
    """Remove the broken libraries (not ``intact``) under inductor's cache ``root`` whose compile lock
    (``locks/<key>.lock``, key = the name up to its first dot) no process holds; the removed files."""
    from filelock import FileLock, Timeout

    root = Path(root) if root is not None else cache_dir()
    removed = []
    for library in sorted(root.rglob("*.so")) if root.is_dir() else []:
        if "locks" in library.relative_to(root).parts or intact(library):
            continue
        (root / "locks").mkdir(exist_ok=True)
        try:
            with FileLock(root / "locks" / f"{library.name.split('.')[0]}.lock", timeout=0):
                if library.is_file() and not intact(library):
                    library.unlink()
                    removed.append(library)
        except Timeout:  # being compiled by another process now
            continue
    return removed


def damage(error: BaseException) -> PipelineError | None:
    """One line for a compile that failed on a file of inductor's cache (an error naming a path in it), else None."""
    root = str(cache_dir())
    while error is not None:
        if isinstance(error, (ImportError, OSError)) and root in str(error):
            return PipelineError(
                f"torch.compile could not load a file of its cache {root} ({str(error).strip()}); "
                f"remove that folder (or set TORCHINDUCTOR_CACHE_DIR to an empty one) and run again"
            )
        error = error.__cause__ or error.__context__
    return None
