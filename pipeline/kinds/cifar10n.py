"""CIFAR-10N (Wei et al., ICLR 2022): real human labels for CIFAR-10's training set. ``--cifar10n FILE``
adds five conditions from its ``CIFAR-10_human.pt`` (``c10n_aggre``, ``c10n_random1..3``, ``c10n_worse``),
mapped to the dataset's rows by the original CIFAR-10 index, as the paper's labels are."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError
from pipeline.kinds.base import CIFAR10_TRAIN_SIZE, FromFile, cifar10_rows, validate_labels
from pipeline.sources.base import Dataset

# CIFAR-10N's label sets (keys of CIFAR-10_human.pt) by the condition name they get here.
SETS = {
    "c10n_aggre": "aggre_label",
    "c10n_random1": "random_label1",
    "c10n_random2": "random_label2",
    "c10n_random3": "random_label3",
    "c10n_worse": "worse_label",
}


def _numpy_globals() -> list:
    """What a pickled integer numpy array needs from ``torch.load(weights_only=True)`` (no code runs),
    under numpy 2's module names and numpy 1's, which older files such as CIFAR-10N's carry."""
    from numpy._core.multiarray import _reconstruct

    ints = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)
    return [
        np.ndarray,
        np.dtype,
        _reconstruct,
        (_reconstruct, "numpy.core.multiarray._reconstruct"),
        *(type(np.dtype(t)) for t in ints),
    ]


def read(path: Path, key: str, ds: Dataset) -> np.ndarray:
    """Label set ``key`` of CIFAR-10N's file in the dataset's row order, after checking that the file's
    ``clean_label`` is the dataset's own labels row for row (it is in CIFAR-10's original order)."""
    import torch

    idx = cifar10_rows(ds, "CIFAR-10N conditions")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except Exception as e:  # noqa: BLE001 - not a torch file, or one holding more than label arrays
        raise PipelineError(
            f"{path}: not a CIFAR-10N label file ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
        ) from None
    wanted = ("clean_label", *SETS.values())  # all checked, whichever is asked for: all five conditions or none
    if not isinstance(data, dict) or any(k not in data for k in wanted):
        have = ", ".join(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise PipelineError(f"{path}: expected a dict with keys clean_label and {', '.join(SETS.values())}; has {have}")
    arrays = {}
    for k in wanted:
        value = data[k]
        try:
            value = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        except (TypeError, ValueError, RuntimeError) as e:  # ragged lists, exotic tensors
            raise PipelineError(
                f"{path}: {k}: not an array of labels ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
            ) from None
        arrays[k] = validate_labels(value, CIFAR10_TRAIN_SIZE, 10, f"{path}: {k}")
    if not np.array_equal(arrays["clean_label"][idx], ds.train_y):
        wrong = int(np.sum(arrays["clean_label"][idx] != ds.train_y))
        raise PipelineError(
            f"{path}: clean_label disagrees with the dataset's labels in {wrong} of {CIFAR10_TRAIN_SIZE} "
            "rows: not CIFAR-10N for this CIFAR-10 training set, or in another order"
        )
    return arrays[key][idx]


class Cifar10N(FromFile):
    """One of CIFAR-10N's real human label sets, from its ``CIFAR-10_human.pt``."""

    def labels(self, cond, ds: Dataset, sources: list[Path], json_dir: Path | None) -> tuple[np.ndarray, None]:
        return read(sources[0], cond.human_key, ds), None

    def describe(self, cond) -> str:
        return f"CIFAR-10N's {cond.human_key} from {cond.source}"


KIND = Cifar10N()
