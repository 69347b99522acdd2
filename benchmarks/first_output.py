"""How long a command is silent on a terminal: seconds to its first byte, to its own output, to its end.

Each command runs with stdout and stderr each on a pseudo-terminal (so a spinner on stderr shows, as
it would for a person), ``COLUMNS=120``, as ``python -m tui_trainer ARGS`` from the source tree given
by ``--src`` (one or more: then the trees alternate run by run, under the same load). Prints a
Markdown table of medians, with every run's first byte.

    git archive 437af73 | tar -x -C /tmp/base      # the code before a change
    python benchmarks/first_output.py --src /tmp/base --src . --rounds 3 --cwd /tmp/rr \\
        "summary spirals-mlp" "doctor --runs-dir runs-doc" "lr-find spirals-mlp --json"
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import statistics
import subprocess
import sys
import time
from pathlib import Path


def run(args: list[str], src: Path, cwd: Path) -> tuple[float | None, float | None, float]:
    """(first byte on either terminal, first byte on stdout, end) of one run, in seconds."""
    out_master, out_slave = pty.openpty()
    err_master, err_slave = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(src.resolve()), COLUMNS="120")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "tui_trainer", *args], stdout=out_slave, stderr=err_slave, cwd=cwd,
                            env=env)
    os.close(out_slave)
    os.close(err_slave)
    first_any = first_out = None
    open_fds = {out_master, err_master}
    while open_fds:
        ready, _, _ = select.select(list(open_fds), [], [], 0.005)
        for fd in ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed its end of the terminal
                chunk = b""
            if not chunk:
                open_fds.discard(fd)
                os.close(fd)
                continue
            now = time.perf_counter() - t0
            first_any = now if first_any is None else first_any
            if fd == out_master and first_out is None:
                first_out = now
    proc.wait()
    return first_any, first_out, time.perf_counter() - t0


def median(values: list[float | None]) -> str:
    seen = [v for v in values if v is not None]
    return f"{statistics.median(seen):.2f}" if seen else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("commands", nargs="+", help="each a quoted command line without 'tui-trainer'")
    parser.add_argument("--src", action="append", type=Path, help="source tree(s) to run (default: this one)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cwd", type=Path, default=Path.cwd(), help="where the commands run")
    args = parser.parse_args()
    sources = args.src or [Path(__file__).resolve().parent.parent]
    results: dict[tuple[str, Path], list[tuple[float | None, float | None, float]]] = {
        (c, s): [] for c in args.commands for s in sources}
    for _ in range(args.rounds):
        for command in args.commands:
            for src in sources:
                results[(command, src)].append(run(command.split(), src, args.cwd))
    print("| command | source | first byte on the terminal | first byte of stdout | end | runs (first byte) |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    for (command, src), runs in results.items():
        firsts = " / ".join(f"{r[0]:.2f}" if r[0] is not None else "-" for r in runs)
        print(f"| `{command}` | {src} | {median([r[0] for r in runs])} | {median([r[1] for r in runs])} | "
              f"{median([r[2] for r in runs])} | {firsts} |")


if __name__ == "__main__":
    main()
