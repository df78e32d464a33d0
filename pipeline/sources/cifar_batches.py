"""torchvision's ``cifar-10-batches-py`` folder (or a folder holding one), put in ImageFolder order
(ids ``<class>/<i>_<class>``). The batches are pickles: read with an unpickler that admits plain data only."""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError
from pipeline.sources.base import Dataset, Options, Source
from pipeline.sources.imagefolder import listing_fingerprint


def _plain_dtype(*args):
    """``numpy.dtype`` for the unpickler: numbers, bytes and strings only (an object dtype could hold anything)."""
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"dtype {dtype} holds Python objects")
    return dtype


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles what a CIFAR-10 python batch holds (dicts, lists, bytes, str, numbers, numpy arrays of plain
    dtypes) and refuses every other global, so a crafted file cannot run code while it is read."""

    def find_class(self, module, name):
        from numpy._core import multiarray

        allowed = {
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): _plain_dtype,
            ("_codecs", "encode"): codecs.encode,
        }  # protocol 2 writes bytes as encode(str, 'latin1')
        for core in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1's and 2's module names
            allowed |= {(core, "_reconstruct"): multiarray._reconstruct, (core, "scalar"): multiarray.scalar}
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: a CIFAR-10 batch holds no code")
        return allowed[module, name]


def _folder(path: Path) -> Path:
    return path if (path / "data_batch_1").exists() else path / "cifar-10-batches-py"


def claims(path: Path) -> bool:
    return path.is_dir() and ((path / "data_batch_1").exists() or (path / "cifar-10-batches-py").is_dir())


def read(path: Path, options: Options) -> Dataset:
    folder = _folder(path)
    options.only(set(), folder, "a cifar-10-batches-py folder: 32x32 images with their own test_batch")

    def unpickle(name):
        try:
            with open(folder / name, "rb") as f:
                return _BatchUnpickler(f, encoding="latin1").load()
        except IsADirectoryError:
            raise PipelineError(f"{folder / name}: a directory, not a CIFAR-10 batch file") from None
        except (
            OSError,
            pickle.UnpicklingError,
            EOFError,
            AttributeError,
            ValueError,
            TypeError,
            KeyError,
            IndexError,
        ) as e:
            text = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
            raise PipelineError(f"{folder / name}: cannot read CIFAR-10 batch ({text})") from None

    def batch(name):
        """(images NHWC uint8, labels) of one batch file, checked: a dict of N x 3072 bytes and N labels in range."""
        b = unpickle(name)
        try:
            data, labels = np.asarray(b["data"]), np.asarray(b["labels"])
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (len(data),):
                raise ValueError(
                    f"data {data.dtype} {data.shape} and labels {labels.shape}: expected N x 3072 uint8 and N"
                )
            if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= len(classes):
                raise ValueError(f"labels must be integers in [0, {len(classes)})")
        except (TypeError, KeyError, IndexError, ValueError) as e:
            raise PipelineError(f"{folder / name}: not a CIFAR-10 batch ({type(e).__name__}: {e})") from None
        return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int64)

    meta = unpickle("batches.meta")
    classes = np.array(meta.get("label_names", []) if isinstance(meta, dict) else [], dtype=str)
    if len(classes) < 2:
        raise PipelineError(f"{folder / 'batches.meta'}: no list of label_names")
    batches = [batch(f"data_batch_{i}") for i in range(1, 6)]
    test_x, test_y = batch("test_batch")
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    stems = np.array([f"{i}_{classes[c]}" for i, c in enumerate(y)])
    order = np.lexsort((stems, y))  # ImageFolder order: class, then file name as a string
    test_order = np.lexsort((np.array([f"{i}_{classes[c]}" for i, c in enumerate(test_y)]), test_y))
    return Dataset(
        train_x=x[order],
        train_y=y[order],
        train_ids=np.array([f"{classes[y[i]]}/{stems[i]}" for i in order]),
        train_source_index=order.astype(np.int64),
        test_x=test_x[test_order],
        test_y=test_y[test_order],
        classes=classes,
    )


SOURCE = Source("cifar-10-batches-py", claims=claims, read=read, fingerprint=listing_fingerprint)
