"""Mutants that must die: small changes that break what a person sees or reads, each with the tests
that must fail with it (issue 27).

``mutation/must_die.toml`` lists them: a file, a snippet of it, what the snippet becomes, the tests
that must catch it, and why it matters. This script applies each mutant to a copy of the tree in a
temporary folder (the working tree is never touched), runs its tests there, and reports which
mutants were killed and which survived. A snippet that is no longer in its file is an error, not a
pass: the list is kept honest as the code changes.

    python mutation/check.py                    # every mutant, one after the other (minutes)
    python mutation/check.py loss-32x chart-draws-nothing
    python mutation/check.py --list             # names, files and tests
    python mutation/check.py --baseline         # first run every named test unmutated: all must pass

Exit code: 0 when every mutant was killed, 1 when one survived, 2 when a mutant no longer applies.
Not part of every CI run: run it after changing the engine, the run boundary or the charts, and add
a mutant here for each bug a test was written for. The wider, tool-driven search (mutmut) is in
``mutation/README.md``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIST = Path(__file__).resolve().parent / "must_die.toml"


@dataclass(frozen=True)
class Mutant:
    """One change to the source and the tests that must fail with it."""

    name: str
    file: str
    find: str
    replace: str
    tests: tuple[str, ...]
    why: str


def load_mutants(path: Path = LIST) -> list[Mutant]:
    """The mutants of ``must_die.toml``, in its order."""
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    return [Mutant(m["name"], m["file"], m["find"], m["replace"], tuple(m["tests"]), m["why"]) for m in doc["mutant"]]


def tree_files(root: Path) -> list[str]:
    """The files of the working tree git knows or would add (tracked, and untracked but not ignored)."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=root,
                         capture_output=True, check=True).stdout
    return [name for name in out.decode().split("\0") if name and (root / name).is_file()]


def copy_tree(root: Path, dest: Path) -> None:
    for name in tree_files(root):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)


def apply(mutant: Mutant, tree: Path) -> None:
    """Change the copy; ValueError when the snippet is not in the file exactly once."""
    path = tree / mutant.file
    text = path.read_text(encoding="utf-8")
    found = text.count(mutant.find)
    if found != 1:
        raise ValueError(f"{mutant.name}: the snippet occurs {found} times in {mutant.file} (expected once): "
                         "update mutation/must_die.toml")
    path.write_text(text.replace(mutant.find, mutant.replace), encoding="utf-8")


def run_tests(tree: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, str]:
    """pytest on ``tests`` in ``tree``: (exit code, the last lines of its output)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", *tests]
    try:
        done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout:.0f} s"
    return done.returncode, (done.stdout + done.stderr)[-3000:]


def failed_tests(output: str) -> list[str]:
    """The tests pytest's summary names as failed or in error."""
    return re.findall(r"^(?:FAILED|ERROR) (\S+)", output, flags=re.MULTILINE)


def check(mutant: Mutant, timeout: float) -> tuple[bool, str]:
    """(killed, what killed it or why it survived), in a fresh copy of the tree."""
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.name}-") as tmp:
        tree = Path(tmp)
        copy_tree(ROOT, tree)
        apply(mutant, tree)
        code, output = run_tests(tree, mutant.tests, timeout)
    if code == 0:
        return False, "every test passed"
    if code in (4, 5):  # usage error, no tests collected: the list names tests that do not exist
        raise ValueError(f"{mutant.name}: pytest exit {code}, the named tests did not run:\n{output}")
    return True, ", ".join(failed_tests(output)) or output.strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutants to check (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--baseline", action="store_true", help="first run the named tests on the unmutated tree")
    parser.add_argument("--timeout", type=float, default=900, help="seconds for one mutant's tests")
    args = parser.parse_args(argv)
    mutants = load_mutants()
    unknown = set(args.names) - {m.name for m in mutants}
    if unknown:
        parser.error(f"no mutant {', '.join(sorted(unknown))}; see --list")
    chosen = [m for m in mutants if not args.names or m.name in args.names]
    if args.list:
        for m in chosen:
            print(f"{m.name:32} {m.file}\n{'':32} {' '.join(m.tests)}\n{'':32} {m.why}")
        return 0
    if args.baseline:
        tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
        with tempfile.TemporaryDirectory(prefix="mutant-baseline-") as tmp:
            copy_tree(ROOT, Path(tmp))
            code, output = run_tests(Path(tmp), tests, args.timeout)
        if code != 0:
            print(f"baseline: the named tests fail without any mutant:\n{output}")
            return 2
        print(f"baseline: {len(tests)} tests pass unmutated")
    survivors, t_all = [], time.monotonic()
    for m in chosen:
        t0 = time.monotonic()
        try:
            killed, detail = check(m, args.timeout)
        except ValueError as exc:
            print(f"error    {exc}")
            return 2
        print(f"{'killed' if killed else 'SURVIVED':8} {m.name:32} {time.monotonic() - t0:5.0f} s  {detail}", flush=True)
        if not killed:
            survivors.append(m)
    print(f"{len(chosen) - len(survivors)}/{len(chosen)} killed in {time.monotonic() - t_all:.0f} s")
    for m in survivors:
        print(f"survivor {m.name}: {m.why} (tests: {' '.join(m.tests)})")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
