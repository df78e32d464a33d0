"""Atomic writes and the currency rule."""

import numpy as np
import pytest

from pipeline import store


def test_is_current_tracks_artifact_inputs_and_config(tmp_path):
    src, out = tmp_path / "in.npy", tmp_path / "out.npy"
    store.save_npy(src, np.arange(5))
    store.save_npy(out, np.arange(5) * 2)
    store.write_manifest(out, {"src": src}, {"k": 1}, wall_s=0.1)
    assert store.is_current(out, {"src": src}, {"k": 1})
    assert not store.is_current(out, {"src": src}, {"k": 2})
    store.save_npy(src, np.arange(6))
    assert not store.is_current(out, {"src": src}, {"k": 1})
    store.save_npy(src, np.arange(5))
    assert store.is_current(out, {"src": src}, {"k": 1})
    out.write_bytes(out.read_bytes()[:-8] + b"\0" * 8)
    assert not store.is_current(out, {"src": src}, {"k": 1})
    with pytest.raises(store.PipelineError, match="checksum"):
        store.read_manifest(out)


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "a.npy"
    store.save_npy(path, np.arange(3))

    def explode(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        store.atomic_write(path, explode)
    assert np.array_equal(np.load(path), np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]


def test_truncated_npy_is_a_clear_error(tmp_path):
    path = tmp_path / "t.npy"
    store.save_npy(path, np.ones((100, 10), np.float32))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(store.PipelineError, match=str(path)):
        store.load_npy(path)
