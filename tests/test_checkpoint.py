"""Checkpoints: atomic writes, safe loads, clear errors for files from elsewhere."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from tui_trainer.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

GOOD = {"format": 1, "model": {"w": torch.ones(3)}, "config": {}, "epoch": 1, "step": 10}


def test_round_trip(tmp_path):
    path = save_checkpoint(GOOD, tmp_path / "a" / "c.pt")
    back = load_checkpoint(path)
    assert torch.equal(back["model"]["w"], torch.ones(3)) and back["step"] == 10
    assert [p.name for p in path.parent.iterdir()] == ["c.pt"]  # no temp file left behind


class _Evil:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_a_pickle_that_would_run_code_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "model": {}, "config": {}, "epoch": 0, "step": 0, "x": _Evil(str(marker))}, path)
    with pytest.raises(CheckpointError, match="refused to load: it would import posix.system"):
        load_checkpoint(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the unsafe way really does run it
    assert marker.exists()


RANDOM = [random.Random(seed).randbytes(2048) for seed in range(20)]
# random blobs that begin like a pickle or a zip exercise the deeper parser layers
RANDOM += [b"\x80\x02" + r[:500] for r in RANDOM[:10]] + [b"PK\x03\x04" + r[:500] for r in RANDOM[:10]]


@pytest.mark.parametrize("content", [b"", b"\x00" * 10, *RANDOM], ids=["empty", "zeros", *map(str, range(len(RANDOM)))])
def test_corrupt_files_give_one_line(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert "not a readable checkpoint" in str(err.value) and "\n" not in str(err.value)


def test_truncated_file(tmp_path):
    path = save_checkpoint(GOOD, tmp_path / "c.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"weights": torch.ones(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a tui-trainer checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = save_checkpoint(GOOD, tmp_path / "c.pt")

    def disk_full(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match="No space left on device"):
        save_checkpoint({**GOOD, "step": 99}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 10
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_kill_minus_nine_during_a_save_loop_never_leaves_a_torn_file(tmp_path):
    path = tmp_path / "c.pt"
    script = textwrap.dedent(f"""
        import torch, sys
        from tui_trainer.engine.checkpoint import save_checkpoint
        i = 0
        while True:
            i += 1
            save_checkpoint({{"format": 1, "model": {{"w": torch.full((200_000,), float(i))}}, "config": {{}},
                             "epoch": i, "step": i}}, {str(path)!r})
            if i == 3:
                print("ready", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    ck = load_checkpoint(path)  # complete: old or new, never torn
    assert torch.all(ck["model"]["w"] == float(ck["epoch"]))
    assert ck["epoch"] >= 3
