"""Device-resident minibatches with on-device augmentation (the airbench pattern).

The uint8 NHWC images go to the device once; every batch is gathered, normalised, randomly
translated (reflection padding) and flipped there as a few batched tensor ops. No per-image Python
work, no worker processes. Rows that do not fit the device's budget (``devices.TaskContext.budget``) stay
where they are (a memory-mapped cache): each batch's rows are gathered by index into a pinned host
buffer by a background thread, a few batches ahead, and copied over; everything after is the same ops
on the same rows, so both paths give the same batches. The randomness of epoch ``e`` is drawn from a generator seeded with
``(seed, e)``, so an epoch's batches do not depend on what ran before it (resume-friendly). Given the
rows' indices in a larger set (``rows``, ``n_all``), it is drawn for the whole set and the rows follow
it: two subsets of one set share, seed for seed, the order and augmentation of the rows they have in
common (paired runs: the cleaned rows against all rows).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.devices import TaskContext
from pipeline.rows import gather

STATS_ROWS = 1 << 12  # images per chunk when summing pixels


def channel_stats(images) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of uint8 NHWC images (an array, a memory-mapped one or ``Rows``), in 0..1 units:
    exact sums of integers over chunks, so the result does not depend on the order or the chunking."""
    c = images.shape[-1]
    total, squares, n = np.zeros(c, object), np.zeros(c, object), 0
    for start in range(0, len(images), STATS_ROWS):
        x = np.asarray(images[start : start + STATS_ROWS]).reshape(-1, c).astype(np.int64)
        total += x.sum(axis=0).astype(object)  # Python ints: no overflow however many pixels
        squares += (x * x).sum(axis=0).astype(object)
        n += len(x)
    mean = np.array([t / (n * 255) for t in total])
    var = np.array([(n * q - t * t) / (n * n * 255 * 255) for t, q in zip(total, squares)])  # each rounded once
    return mean, np.maximum(np.sqrt(var), 1e-3)


def prefetch(images, batches: list[torch.Tensor], device: torch.device, depth: int = 3):
    """Each batch's rows (CPU index tensors) of the host ``images``, as a uint8 tensor on ``device``, gathered by
    a background thread ``depth`` batches ahead into pinned buffers (on CUDA) and copied asynchronously."""
    import queue
    import threading

    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    cuda = device.type == "cuda"

    def work():
        try:
            for idx in batches:
                host = torch.from_numpy(gather(images, idx.numpy()))
                if cuda:
                    host = host.pin_memory()  # page-locked: the copy below runs without a staging copy, asynchronously
                out = host.to(device, non_blocking=True) if cuda else host
                while not stop.is_set():
                    try:
                        ready.put((out, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as e:  # noqa: BLE001 - raised again in the consumer
            ready.put((None, e))

    thread = threading.Thread(target=work, name="prefetch", daemon=True)
    thread.start()
    try:
        for _ in batches:
            out, error = ready.get()
            if error is not None:
                raise error
            yield out
    finally:
        stop.set()
        thread.join()


class Batches:
    """Iterable of ``(images float NCHW, labels int64)`` batches living on ``ctx``'s device (a rank of a task on
    several devices: its share of every batch).

    ``train=True``: a fresh permutation, a random translation of up to ``translate`` px (default 1/8 of
    the size: 4 px on CIFAR-10) and flips every epoch; batches of exactly ``batch_size`` (a short last
    batch is dropped, as a 1-example batch would derail BN/Co-Teaching). Flips are random per epoch, or
    with ``alternate_flips`` random in epoch 0 and then each image's flip inverted every epoch, so
    every pair of consecutive epochs shows both orientations of every image (airbench's trick: less
    repetition than independent coin flips). ``train=False``: the rows in order, unaugmented, once each.
    """

    def __init__(
        self,
        images,
        labels,
        *,
        batch_size,
        ctx: TaskContext,
        mean,
        std,
        train,
        seed=0,
        translate=None,
        alternate_flips=False,
        rows=None,
        n_all=None,
    ):
        device = ctx.device
        nbytes = int(np.prod(images.shape)) * np.dtype(images.dtype).itemsize
        budget = ctx.budget()
        self.streamed = nbytes > budget
        if self.streamed and train:
            from pipeline.cli import log

            log(
                f"streaming {len(labels)} rows ({nbytes / 2**30:.2f} GiB) from the host, a batch at a time: more than the "
                f"{budget / 2**30:.2f} GiB the device may hold (--device-memory)"
            )
        # N,H,W,C uint8: on the device, or (streamed) left on the host, read a batch at a time
        self.images = images if self.streamed else torch.as_tensor(np.ascontiguousarray(np.asarray(images))).to(device)
        self.labels = torch.as_tensor(np.asarray(labels, np.int64)).to(device)
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255
        self.std = torch.as_tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.pad = max(1, images.shape[1] // 8) if translate is None else translate
        self.alternate_flips = alternate_flips
        self.device, self.rank, self.world = device, ctx.rank, ctx.world
        self.rows = None if rows is None else torch.as_tensor(np.asarray(rows, np.int64))
        self.n_all = len(self.labels) if rows is None else int(n_all)
        self.epoch = 0
        self.kept: torch.Tensor | None = None  # see keep()

    def keep(self, mask) -> None:
        """Train on the rows where ``mask`` (bool, one per row) is True from the next epoch on. An epoch
        keeps its number of batches (the schedule is per step): the kept rows' order is cycled to fill it."""
        mask = torch.as_tensor(np.asarray(mask, bool))
        if len(mask) != len(self.labels) or not mask.any():
            raise ValueError(f"keep(): expected a mask of {len(self.labels)} rows keeping at least one")
        self.kept = mask

    @property
    def sampler(self) -> Batches:
        """Lightning calls ``sampler.set_epoch(epoch)`` before every epoch (DistributedSampler's protocol),
        so a resumed training draws the epoch it resumes at."""
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def in_order(self) -> Batches:
        """The same rows, in order, unaugmented and all of them (as ``train=False``), sharing the images."""
        view = copy.copy(self)
        view.train, view.kept = False, None
        return view

    def __len__(self) -> int:
        n = len(self.labels)
        if self.train and n >= self.batch_size:
            return n // self.batch_size
        return -(-n // self.batch_size)

    def sample(self, k: int) -> torch.Tensor:
        """``k`` rows drawn at random (seeded), normalised and unaugmented (NCHW float). Random, not the
        first ``k``: rows are often sorted by class (ImageFolder order), and a sample of one class is not
        the data's statistics."""
        n = len(self.labels)
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + 777_777))[: min(k, n)]
        return self._normalise(next(self._fetch([idx.sort().values])))

    def _fetch(self, batches: list[torch.Tensor]):
        """The rows of each batch (CPU index tensors) on the device, in order: indexed there, or streamed."""
        if self.streamed:
            yield from prefetch(self.images, batches, self.device)
            return
        for idx in batches:
            yield self.images[idx.to(self.device)]

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2).float()
        return (x - self.mean) / self.std

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        """NHWC strides (channels_last): the layout the convolutions run fastest in, on the GPU's tensor
        cores and in oneDNN on the CPU (airbench net, 2-core AVX2 CPU: 1.2-1.5x the images/s of NCHW)."""
        return x.contiguous(memory_format=torch.channels_last)

    def _augment(self, x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = F.pad(x, (self.pad,) * 4, mode="reflect")  # reflected borders look like images; zeros would not
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        x = x[
            torch.arange(b, device=x.device)[:, None, None, None],
            torch.arange(c, device=x.device)[None, :, None, None],
            rows,
            cols,
        ]
        return torch.where(flip[:, None, None, None], x.flip(3), x)

    def __iter__(self):
        n = len(self.labels)
        if not self.train:
            order = [torch.arange(start, min(start + self.batch_size, n)) for start in range(0, n, self.batch_size)]
            for idx, x in zip(order, self._fetch(order)):
                yield self._layout(self._normalise(x)), self.labels[idx.to(self.device)]
            return
        # Drawn for all n_all rows of the set (this epoch's order, and each row's shift and flip).
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.n_all, generator=g)
        shifts = torch.randint(0, 2 * self.pad + 1, (2, self.n_all), generator=g)
        if self.alternate_flips:
            base = (
                torch.rand(self.n_all, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + 999_999)) < 0.5
            )
            flips = base ^ bool(self.epoch % 2)
        else:
            flips = torch.rand(self.n_all, generator=g) < 0.5
        if self.rows is not None:  # keep our rows, in the set's order; index their shifts and flips
            local = torch.full((self.n_all,), -1, dtype=torch.int64)
            local[self.rows] = torch.arange(n)
            perm = local[perm]
            perm = perm[perm >= 0]
            shifts, flips = shifts[:, self.rows], flips[self.rows]
        shifts, flips = shifts.to(self.device), flips.to(self.device)
        self.epoch += 1
        if self.kept is not None:
            perm = perm[self.kept[perm]]
            perm = perm.repeat(-(-len(self) * self.batch_size // len(perm)))
        order = [perm[i * self.batch_size : (i + 1) * self.batch_size] for i in range(len(self))]
        if self.world > 1:  # a rank of a task on several devices: its share of every batch (the steps of one device)
            order = [idx.view(self.world, -1)[self.rank] for idx in order]
        for idx, x in zip(order, self._fetch(order)):
            idx = idx.to(self.device)
            yield (
                self._layout(self._augment(self._normalise(x), shifts[0, idx], shifts[1, idx], flips[idx])),
                self.labels[idx],
            )


class FeatureBatches(Batches):
    """``Batches`` of feature vectors (N, D; a backbone's pooled features) instead of images: standardised with
    ``mean``/``std`` (per feature), never augmented; the same order, pairing and ``keep`` as images."""

    def __init__(
        self, features, labels, *, batch_size, ctx: TaskContext, mean, std, train, seed=0, rows=None, n_all=None
    ):
        super().__init__(
            features,
            labels,
            batch_size=batch_size,
            ctx=ctx,
            mean=np.zeros(1),
            std=np.ones(1),
            train=train,
            seed=seed,
            translate=0,
            rows=rows,
            n_all=n_all,
        )
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=ctx.device).view(1, -1)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=ctx.device).view(1, -1)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _augment(self, x: torch.Tensor, *_) -> torch.Tensor:
        return x
