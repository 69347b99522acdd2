"""The decoded-tensor cache of the IDX datasets (data/tensor_cache.py): written at the first load, used while its
source files are unchanged (no torchvision, no decode), decoded over when they change or it is damaged."""

from __future__ import annotations

import os

import pytest
import torch

from tests.test_data_real import CPU, fake_fashion, fashion_cfg
from tui_trainer.data import load_data, real, tensor_cache


@pytest.fixture
def cache(tmp_path):
    """A data cache with made-up Fashion-MNIST IDX files."""
    root = tmp_path / "cache"
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name, data in fake_fashion(n_train=60, n_test=20).items():
        (raw / name).write_bytes(data)
    return root


@pytest.fixture
def opens(monkeypatch):
    """Counts torchvision opens of the dataset (each one is the import and a decode)."""
    calls = []
    original = real._open_torchvision

    def counting(name, root, train):
        calls.append((name, train))
        return original(name, root, train)

    monkeypatch.setattr(real, "_open_torchvision", counting)
    return calls


def test_the_first_load_decodes_and_caches_the_second_reads_the_cache(cache, opens):
    first = real._decoded("fashion-mnist", cache)
    assert len(opens) == 3  # the check that the files open, then train and test
    path = tensor_cache.cache_file("fashion-mnist", cache)
    assert path == cache / ".tensors" / "fashion-mnist.pt" and path.is_file()
    opens.clear()
    second = real._decoded("fashion-mnist", cache)
    assert opens == []  # no torchvision at all
    assert [tuple(t.shape) for t in second] == [(60, 1, 28, 28), (60,), (20, 1, 28, 28), (20,)]
    assert [t.dtype for t in second] == [torch.uint8, torch.int64, torch.uint8, torch.int64]
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)
    assert int(second[1][7]) == 7 and int(second[0][3, 0, 6, 0]) == 250  # the fake's class band, as decoded


def test_a_changed_source_file_makes_the_cache_stale(cache, opens):
    real._decoded("fashion-mnist", cache)
    labels = cache / "FashionMNIST" / "raw" / "train-labels-idx1-ubyte"
    data = bytearray(labels.read_bytes())
    data[8] = 9  # the first training label becomes 9: same size, new content and time
    labels.write_bytes(bytes(data))
    st = labels.stat()
    os.utime(labels, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    opens.clear()
    again = real._decoded("fashion-mnist", cache)
    assert len(opens) == 3 and int(again[1][0]) == 9
    opens.clear()
    assert int(real._decoded("fashion-mnist", cache)[1][0]) == 9 and opens == []  # cached anew


def test_a_damaged_or_foreign_cache_is_decoded_over(cache, opens):
    real._decoded("fashion-mnist", cache)
    path = tensor_cache.cache_file("fashion-mnist", cache)
    path.write_bytes(path.read_bytes()[:1000])  # torn
    opens.clear()
    assert real._decoded("fashion-mnist", cache)[0].shape == (60, 1, 28, 28) and len(opens) == 3
    torch.save({"version": 99, "sources": tensor_cache.source_key("fashion-mnist", cache)}, path)
    assert tensor_cache.load_cached("fashion-mnist", cache) is None


def test_a_source_file_gone_means_no_cache(cache):
    real._decoded("fashion-mnist", cache)
    (cache / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    assert tensor_cache.load_cached("fashion-mnist", cache) is None


def test_a_cache_that_cannot_be_written_only_costs_the_decode(cache, opens, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tensor_cache.tempfile, "mkstemp", full_disk)
    assert real._decoded("fashion-mnist", cache)[0].shape == (60, 1, 28, 28)
    assert not tensor_cache.cache_file("fashion-mnist", cache).exists()


def test_the_loader_trains_from_the_cache(cache, opens, tmp_path):
    load_data(fashion_cfg(cache), CPU)
    opens.clear()
    data = load_data(fashion_cfg(cache), CPU)
    assert opens == [] and data.train.n_samples == 60 and data.val.n_samples == 20
    assert data.class_names[9] == "Ankle boot"
