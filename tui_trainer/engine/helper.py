"""The app's helper process: answers questions that need torch, so the app itself never imports it.

``python -m tui_trainer.engine.helper`` reads one JSON request per line on stdin and writes one JSON
reply per line on stdout, until stdin closes (the app quit or died):

* ``{"id": 1, "op": "devices"}`` -> ``{"id": 1, "devices": ["cpu", ...], "describe": {"cpu": "cpu: ..."}}``
* ``{"id": 2, "op": "describe", "config": {...}}`` -> ``{"id": 2, "total": n, "trainable": n, "summary": "..."}``
  (a config naming the user's own code: it is imported, its file read again, and one batch goes through it; what
  is wrong comes back as the error, one line at the user's file and line)
* ``{"id": 3, "op": "examples", "config": {...}}`` -> ``{"id": 3, "class_names": [...], "shape": [c, h, w],
  "raw": [[class, base64 pixels], ...], "fed": [...], "fed_range": [lo, hi]}`` (engine.samples.training_examples)
* any failure -> ``{"id": n, "error": "one line"}``
"""

from __future__ import annotations

import json
import sys
from typing import Any

from tui_trainer.errors import first_line


def answer(request: dict[str, Any]) -> dict[str, Any]:
    """The reply to one request."""
    rid = request.get("id")
    try:
        op = request.get("op")
        if op == "devices":
            import torch

            from tui_trainer.engine.device import all_devices, describe_device, pick_device

            found = {info.type: info.describe() for info in reversed(all_devices())}
            auto = pick_device("auto").type
            mem = None
            if auto == "cuda":
                free, total = torch.cuda.mem_get_info()
                mem = [total - free, free]
            return {"id": rid, "devices": sorted(found), "auto": auto, "gpus": torch.cuda.device_count(),
                    "describe": {**found, "auto": describe_device(pick_device("auto")).describe()}, "memory": mem}
        if op == "describe":
            from tui_trainer.config import from_dict
            from tui_trainer.engine import describe_model

            total, trainable, summary = describe_model(from_dict(request["config"], source="panels"))
            return {"id": rid, "total": total, "trainable": trainable, "summary": summary}
        if op == "examples":
            from tui_trainer.config import from_dict
            from tui_trainer.engine.samples import examples_of

            return {"id": rid, **examples_of(from_dict(request["config"], source="panels"))}
        return {"id": rid, "error": f"unknown op {op!r}; allowed: devices, describe, examples"}
    except Exception as exc:  # noqa: BLE001 - every failure is an answer, never a dead helper
        return {"id": rid, "error": first_line(exc)}


def main() -> None:
    """Serve requests until stdin closes."""
    import torch

    torch.set_num_threads(1)  # one thread is plenty, and never a run's (torch is loaded already: engine/__init__)
    for line in sys.stdin:
        try:
            request = json.loads(line)
        except json.JSONDecodeError:
            continue
        sys.stdout.write(json.dumps(answer(request)) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
