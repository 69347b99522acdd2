"""The command line. ``app.py`` holds the typer commands (typer is imported only there),
``common.py`` what the bare ``tui-trainer`` and the commands share, ``console.py`` the console output.

Exit codes: 0 done (early stop included), 1 training failed, 2 bad usage or config,
130 interrupted (after saving).
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    """Run the typer CLI on ``argv`` (imports typer now)."""
    from tui_trainer.cli.app import main as typer_main

    typer_main(argv)
