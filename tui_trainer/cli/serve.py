"""``tui-trainer serve``: the app in a web browser, through Textualize's textual-serve (optional extra).

textual-serve runs a web server; each browser tab that connects gets its own app process, started
from a shell command with Textual's web driver, and the terminal is drawn in the page by xterm.js.
The command served is this interpreter running ``tui_trainer.cli ui`` (the same source tree and
environment as the server, which a ``tui-trainer`` found on PATH might not be). Runs started in a
tab are run processes of their own, as in a terminal: closing the tab detaches, it does not stop.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from tui_trainer.config import RunConfig
from tui_trainer.config.factories import NO_CODE_ENV, names_code
from tui_trainer.errors import ConfigError

SERVE_MISSING = ("serving the app in a browser needs textual-serve: pip install 'textual-serve>=1.1' "
                 "(in a clone of tui-trainer: pip install '.[serve]')")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def app_command(preset: str, overrides: list[str], runs_dir: Path, device: str | None = None) -> str:
    """The shell command each browser session runs: the app on ``preset`` with ``runs_dir`` (absolute)."""
    args = [sys.executable, "-m", "tui_trainer.cli", "ui", "--preset", preset, "--runs-dir", str(runs_dir.resolve())]
    for override in overrides:
        args += ["--set", override]
    if device is not None:
        args += ["--device", device]
    return shlex.join(args)


def refuse_code(cfg: RunConfig) -> None:
    """ConfigError when the served preset names code: a browser session would run it for whoever reaches it."""
    if names_code(cfg):
        named = cfg.model.factory or cfg.data.factory or (cfg.model.arch if cfg.model.arch.startswith("plugin:")
                                                          else cfg.data.dataset)
        raise ConfigError(f"preset {cfg.name!r} names code to run ({named}); serve runs it for anyone who reaches "
                          "the page: start serve with --allow-code to allow it, or serve a built-in preset")


def serve_app(command: str, host: str, port: int, public_url: str | None = None, allow_code: bool = False) -> None:
    """Serve ``command`` until interrupted; ConfigError (one line, exit 2) if textual-serve is missing. Without
    ``allow_code`` the browser sessions (they inherit this environment) refuse fields that name code."""
    try:
        from textual_serve.server import Server
    except ImportError:
        raise ConfigError(SERVE_MISSING) from None
    if not allow_code:
        os.environ[NO_CODE_ENV] = "1"
    if host not in LOOPBACK:
        print(f"warning: serving on {host}: anyone who can reach it can start runs here (there is no login)",
              file=sys.stderr)
    try:
        Server(command, host=host, port=port, title="tui-trainer", public_url=public_url).serve()
    except OSError as exc:  # the port is taken, or the address is not this machine's
        raise ConfigError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
