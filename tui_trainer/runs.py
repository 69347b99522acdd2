"""The run directory: ``runs/<YYYYmmdd-HHMMSS>-<preset>/`` with config.toml, metrics.jsonl, checkpoints/."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tui_trainer.config import ConfigError, RunConfig, to_toml


class RunDir:
    """Paths and writers of one run's directory."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def checkpoints(self) -> Path:
        """Folder of the run's checkpoints."""
        return self.path / "checkpoints"

    @property
    def metrics_path(self) -> Path:
        """One JSON object per epoch."""
        return self.path / "metrics.jsonl"

    @property
    def last(self) -> Path:
        """Written every epoch and when the run stops."""
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        """Written when the monitored metric improves."""
        return self.checkpoints / "best.pt"

    def manual(self, epoch: int, step: int) -> Path:
        """A checkpoint saved on request."""
        return self.checkpoints / f"manual-e{epoch:03d}-s{step:07d}.pt"

    def append_metrics(self, row: dict) -> None:
        """Append one epoch's row (flushed, so a crash loses at most the row being written)."""
        with open(self.metrics_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
            fh.flush()

    def read_metrics(self) -> list[dict]:
        """Every row written so far (a torn last line is skipped)."""
        if not self.metrics_path.exists():
            return []
        rows = []
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return rows

    def truncate_metrics(self, epochs_done: int) -> None:
        """Keep only rows of epochs <= epochs_done (a resume replays what came after)."""
        rows = [r for r in self.read_metrics() if r.get("epoch", 0) <= epochs_done]
        tmp = self.metrics_path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        os.replace(tmp, self.metrics_path)


def create_run_dir(runs_dir: Path | str, cfg: RunConfig) -> RunDir:
    """Make a fresh run directory and write the resolved config; ConfigError if it cannot be written."""
    root = Path(runs_dir).expanduser()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in cfg.name) or "run"
    try:
        root.mkdir(parents=True, exist_ok=True)
        path = root / f"{stamp}-{safe}"
        n = 1
        while path.exists():
            n += 1
            path = root / f"{stamp}-{safe}-{n}"
        (path / "checkpoints").mkdir(parents=True)
        (path / "config.toml").write_text(to_toml(cfg), encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or exc
        raise ConfigError(f"runs directory {root} is not writable: {reason}; choose another with --runs-dir") from None
    return RunDir(path)
