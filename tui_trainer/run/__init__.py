"""The run boundary, stdlib only: what a run says and where it says it, and everything that reads it.

A run is a folder (``folder.py``: its paths, status and state; ``prepare_run`` makes one and is the one writer of
its config.toml), an event log (``events.py``, the frozen versioned events; ``eventlog.py``, events.jsonl and the
history.json snapshot), the fold of those events (``history.py``), the one follower that reads them (``follow.py``),
the run process's sink (``recorder.py``), its controls (``controls.py``, the command queue; ``endpoint.py``, the
socket a client sends commands to) and the client's hold on a run (``client.py``: start, attach, send, stop). Built on
them: ``compare.py``, ``export.py`` and the number formats (``formats.py``). Nothing here imports torch or a front end,
so the app paints, lists and attaches without them (a test imports this folder in a subprocess to prove it).
"""
