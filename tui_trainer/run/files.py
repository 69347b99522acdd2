"""Writing and reading the run folder's small files: whole or not at all, and JSON lines a torn one at a time."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path


def atomic_write(path: Path, text: str, durable: bool = True) -> None:
    """Replace ``path`` whole (a reader sees the old or the new file); ``durable`` also fsyncs it (status.json
    skips that: it is rewritten often and a lost update after a power cut only makes it a little stale)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not leave half a file behind
        raise


def why_not_written(exc: OSError) -> str:
    """The cause of a failed write as the system says it ("No space left on device")."""
    return exc.strerror or str(exc)


def json_lines(path: Path) -> Iterator[dict]:
    """The JSON objects of a JSON-lines file, skipping a torn or foreign line (nothing if the file is missing)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            yield row


def size(path: Path) -> int:
    """The file's size in bytes (0 if it is missing)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0
