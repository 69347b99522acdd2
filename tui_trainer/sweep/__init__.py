"""Sweeps on Optuna: many runs searched, pruned and compared, on one box or several.

A sweep is a process with a folder of its own (``folder.py``): the spec (``spec.py``: the preset, the space of
``space.py``, the trials, slots of ``slots.py``, pruner, metric, storage), Optuna's storage (``study.py``: a journal
file in the folder by default, a database URL shared by several machines), what it did (``events.py``:
events.jsonl and its fold) and its trials, each an ordinary run folder. The process (``process.py``, the loop in
``sweeper.py``, one trial in ``trial.py``) asks the study for parameters, starts each trial as a run process
(``run.client.start``), follows its epochs with the one follower, reports them, and stops a pruned trial through
its control endpoint. ``client.py`` starts, follows and stops sweep processes for the CLI (and the app).

Optuna is imported by ``study.py`` (and the process) only, lazily; nothing here imports torch or a front end.
"""
