"""mutmut over the engine's numbers, the run boundary's events and the charts, checked against the
survivors we know and accept (``mutation/survivors.toml``, each with its reason).

mutmut (https://github.com/boxed/mutmut, ``pip install mutmut``) mutates every function of ``SCOPE``
one change at a time and runs the fast in-process tests that cover it (``[tool.mutmut]`` in
pyproject.toml: test_engine, test_events, test_charts, the chart cases of test_app_never_dies and the
lecture's one-step test). A mutant that no test kills is a missing test, dead code, or a change that
cannot matter here (a CUDA-only path on the CPU, an equivalent rewrite): the last kind is listed in
survivors.toml with why. This script reports the survivors that are not listed (exit 1) and listed
ones that no longer survive (the list is stale: remove them).

    python mutation/mutmut_run.py            # the whole scope (about 20 minutes on 2 idle cores)
    python mutation/mutmut_run.py charts     # one part: engine, boundary or charts
    python mutation/mutmut_run.py --report   # only re-read the last run's results

Run it from the repository root with an interpreter that has mutmut and the project's dependencies
(a venv with ``--system-site-packages`` beside the project's works). mutmut works in ``mutants/``
(ignored by git). The short list of mutants that must die, and the command that checks them in
minutes, is ``mutation/check.py``.
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SURVIVORS = Path(__file__).resolve().parent / "survivors.toml"
SCOPE = {
    "engine": ["tui_trainer.engine.loop.xǁFitǁ_flush__mutmut_*", "tui_trainer.engine.loop.xǁFitǁend_epoch__mutmut_*",
               "tui_trainer.engine.loop.xǁFitǁtrain_epoch__mutmut_*",
               "tui_trainer.engine.loop.xǁFitǁflush_interval__mutmut_*",
               "tui_trainer.engine.steps.xǁStepBodyǁ__call____mutmut_*"],
    "boundary": ["tui_trainer.run.folder.xǁEventWriterǁ*", "tui_trainer.run.folder.xǁEventReaderǁread__mutmut_*",
                 "tui_trainer.run.events.x_encode__mutmut_*", "tui_trainer.run.events.x_decode__mutmut_*"],
    "charts": ["tui_trainer.ui.widgets.charts.x_downsample__mutmut_*", "tui_trainer.ui.widgets.charts.x_drawable__mutmut_*",
               "tui_trainer.ui.widgets.charts.xǁSeriesChartǁ_configure__mutmut_*"],
}
STATUS = {"🎉": "killed", "🙁": "survived", "🫥": "no tests", "⏰": "timeout", "🤔": "suspicious", "🔇": "skipped",
          "🧙": "caught by type check"}


@dataclass(frozen=True)
class Known:
    """An accepted survivor: a function, its line before and after the change (fnmatch patterns), and why."""

    function: str
    original: str
    mutated: str
    reason: str

    def matches(self, function: str, original: str, mutated: str) -> bool:
        return (function == self.function and fnmatch.fnmatchcase(original, self.original)
                and fnmatch.fnmatchcase(mutated, self.mutated))


def load_known(path: Path = SURVIVORS) -> list[Known]:
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    return [Known(s["function"], s["original"], s["mutated"], s["reason"]) for s in doc.get("survivor", [])]


def mutmut(*args: str, capture: bool = True) -> str:
    done = subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=ROOT, capture_output=capture, text=True)
    return (done.stdout or "") + (done.stderr or "")


def results(output: str) -> dict[str, str]:
    """Mutant name -> status, from the "Mutant results" that ``mutmut run NAMES`` prints at its end."""
    found = {}
    for line in output.replace("\r", "\n").splitlines():
        match = re.match(r"^(\S+) (tui_trainer\.\S+__mutmut_\d+)$", line.strip())
        if match and match.group(1) in STATUS:
            found[match.group(2)] = STATUS[match.group(1)]
    return found


def change(name: str) -> tuple[str, str]:
    """The mutated line(s) of a mutant, before and after, each joined into one line of stripped text."""
    diff = mutmut("show", name).splitlines()
    before = " / ".join(line[1:].strip() for line in diff if line.startswith("-") and not line.startswith("---"))
    after = " / ".join(line[1:].strip() for line in diff if line.startswith("+") and not line.startswith("+++"))
    return before, after


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("parts", nargs="*", help=f"parts of the scope: {', '.join(SCOPE)} (default: all)")
    parser.add_argument("--report", action="store_true", help="do not run mutmut: report on mutants/last-run.txt")
    args = parser.parse_args(argv)
    if set(args.parts) - set(SCOPE):
        parser.error(f"parts are {', '.join(SCOPE)}")
    patterns = [p for part in (args.parts or SCOPE) for p in SCOPE[part]]
    log = ROOT / "mutants" / "last-run.txt"
    t0 = time.monotonic()
    if not args.report:
        output = mutmut("run", *patterns)
        log.parent.mkdir(exist_ok=True)
        log.write_text(output, encoding="utf-8")
    output = log.read_text(encoding="utf-8")
    status = {name: s for name, s in results(output).items() if any(fnmatch.fnmatchcase(name, p) for p in patterns)}
    if not status:
        print(output[-3000:])
        print("no mutant results: see mutmut's output above")
        return 2
    counts = {s: list(status.values()).count(s) for s in dict.fromkeys(status.values())}
    print(f"{len(status)} mutants: " + ", ".join(f"{n} {s}" for s, n in counts.items())
          + (f" in {time.monotonic() - t0:.0f} s" if not args.report else ""))
    known, used, unexplained = load_known(), set(), []
    for name, s in sorted(status.items()):
        if s not in ("survived", "no tests", "suspicious"):  # a timeout is a kill: the tests did not pass (a hang)
            continue
        function = name.rsplit("__mutmut_", 1)[0]
        before, after = change(name)
        entry = next((k for k in known if k.matches(function, before, after)), None)
        if entry is None or s != "survived":
            unexplained.append(f"{s:9} {name}\n          - {before}\n          + {after}")
        else:
            used.add(entry)
    for line in unexplained:
        print(line)
    stale = [k for k in known if k not in used and any(fnmatch.fnmatchcase(k.function + "__mutmut_1", p) for p in patterns)]
    for k in stale:
        print(f"stale     survivors.toml: {k.function}: {k.original!r} -> {k.mutated!r} no longer survives")
    print(f"{len(unexplained)} survivors not in survivors.toml, {len(used)} listed ones seen, {len(stale)} listed ones gone")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
