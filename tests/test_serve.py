"""``tui-trainer serve``: the app in a real headless browser (Debian's chromium, driven over the Chrome
DevTools protocol with aiohttp's websocket client, which textual-serve already brings: no driver
binary, nothing downloaded), and one line with exit 2 when the serve extra is missing.

textual-serve draws the terminal with xterm.js's WebGL renderer, so the screen's text is in no DOM
node; a script added before the page's own keeps a reference to its xterm ``Terminal`` and the test
reads the rows that terminal draws from its buffer.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_cli import run_main
from tui_trainer.cli.serve import SERVE_MISSING, app_command
from tui_trainer.run.folder import pid_alive

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Runs before textual.js: the first object to set ``webglAddon`` is textual-serve's terminal wrapper.
KEEP_TERMINAL = """Object.defineProperty(Object.prototype, "webglAddon", {configurable: true, set(value) {
  window.__terminal = this;
  Object.defineProperty(this, "webglAddon", {value, writable: true, configurable: true, enumerable: true});
}});"""
SCREEN_TEXT = """(() => { const t = window.__terminal && window.__terminal.terminal; if (!t) return "";
  const b = t.buffer.active, rows = [];
  for (let i = 0; i < t.rows; i++) {
    const line = b.getLine(b.viewportY + i);
    rows.push(line ? line.translateToString(true) : "");
  }
  return rows.join("\\n"); })()"""


def test_serve_without_the_extra_is_one_line_exit_2(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "textual_serve", None)  # import fails as if it were not installed
    monkeypatch.setitem(sys.modules, "textual_serve.server", None)
    code, out, err = run_main(capsys, "serve", "--port", "8765")
    assert code == 2 and out == ""
    assert err == f"error: {SERVE_MISSING}\n" == ("error: serving the app in a browser needs textual-serve: pip install "
                                              "'textual-serve>=1.1' (in a clone of tui-trainer: pip install '.[serve]')\n")


def test_serve_passes_preset_overrides_and_runs_dir_to_the_app(capsys, monkeypatch, tmp_path):
    import tui_trainer.cli.serve as serve_mod

    served = []
    monkeypatch.setattr(serve_mod, "serve_app", lambda *args: served.append(args))
    code, _, err = run_main(capsys, "serve", "--preset", "moons-mlp", "--set", "optimizer.lr=0.1", "--runs-dir", "r")
    assert code == 0, err
    command, host, port, public_url, allow_code = served[0]
    assert (host, port, public_url, allow_code) == ("127.0.0.1", 8000, None, False)  # loopback, no code unless asked
    assert shlex.split(command) == [sys.executable, "-m", "tui_trainer.cli", "ui", "--preset", "moons-mlp",
                                    "--runs-dir", str(tmp_path / "r"), "--set", "optimizer.lr=0.1"]
    code, _, err = run_main(capsys, "serve", "--preset", "nope")  # checked once, before serving
    assert code == 2 and "unknown preset 'nope'" in err and len(served) == 1
    assert app_command("spirals-mlp", [], Path("x y")).endswith(f"--runs-dir {shlex.quote(str(tmp_path / 'x y'))}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DevTools:
    """The few Chrome DevTools protocol calls the test needs, over one page's websocket."""

    def __init__(self, ws) -> None:
        self.ws, self.ids = ws, itertools.count(1)

    async def call(self, method: str, **params) -> dict:
        n = next(self.ids)
        await self.ws.send_json({"id": n, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json()
            if msg.get("id") == n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    async def screen(self) -> str:
        """The rows the page's terminal shows ('' before it exists)."""
        result = await self.call("Runtime.evaluate", expression=SCREEN_TEXT, returnByValue=True)
        return result["result"].get("value") or ""

    async def state(self) -> str:
        """Where the page is (for a failure message): its address, body classes and screen."""
        expression = "JSON.stringify([location.href, document.body && document.body.className])"
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return f"{result['result'].get('value')}\n{await self.screen()}"

    async def press(self, key: str) -> None:
        await self.call("Runtime.evaluate", expression="window.__terminal.terminal.focus()")
        await self.call("Input.dispatchKeyEvent", type="keyDown", key=key, code=f"Key{key.upper()}", text=key,
                        windowsVirtualKeyCode=ord(key.upper()))
        await self.call("Input.dispatchKeyEvent", type="keyUp", key=key, code=f"Key{key.upper()}",
                        windowsVirtualKeyCode=ord(key.upper()))


async def _until(what: str, check, deadline: float, detail=None):
    """Poll ``check`` (async) until it returns something true; at the deadline fail naming ``what``, with
    what ``detail`` (async) shows."""
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within the time limit\n{await detail() if detail else ''}")
        await asyncio.sleep(0.25)


def _stop(proc: subprocess.Popen) -> None:
    """End a process this test started (and its process group, which it leads), then reap it."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _stop_runs(runs: Path) -> None:
    """Stop the run processes the page started (a run outlives its app by design), and wait until they end."""
    for status in runs.glob("*/status.json"):
        pid = json.loads(status.read_text()).get("pid")
        if pid and pid_alive(int(pid)):
            os.kill(int(pid), signal.SIGTERM)  # stops within a step and saves
            end = time.monotonic() + 15
            while pid_alive(int(pid)) and time.monotonic() < end:
                time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_the_app_in_a_browser_shows_its_panels_and_trains(tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    pytest.importorskip("textual_serve", reason="the serve extra is not installed (pip install '.[serve]')")
    aiohttp = pytest.importorskip("aiohttp", reason="aiohttp (a textual-serve dependency) is not installed")
    deadline = time.monotonic() + 80
    runs, profile, port = tmp_path / "runs", tmp_path / "chromium-profile", _free_port()
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - closed in finally
    server = subprocess.Popen(
        [sys.executable, "-m", "tui_trainer.cli", "serve", "--port", str(port), "--runs-dir", str(runs),
         "--preset", "moons-mlp", "--set", "data.n_samples=200", "--set", "train.epochs=2",
         "--set", "train.diagnostics=false"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    chromium = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--remote-debugging-port=0", "--window-size=1400,900",
         "--enable-unsafe-swiftshader",  # xterm.js's WebGL renderer on the software rasterizer, for this page only
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # the page's web-font link never leaves here
         "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        async with aiohttp.ClientSession() as http:
            async def devtools_port():
                try:
                    return int((profile / "DevToolsActivePort").read_text().split()[0])
                except (OSError, IndexError, ValueError):
                    return None

            async def served():
                if server.poll() is not None:
                    pytest.fail(f"tui-trainer serve exited:\n{(tmp_path / 'serve.log').read_text()}")
                try:
                    async with http.get(f"http://127.0.0.1:{port}/") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            dport = await _until("chromium's DevTools port", devtools_port, deadline)
            targets = await (await http.get(f"http://127.0.0.1:{dport}/json/list")).json()
            page = next(t for t in targets if t["type"] == "page")
            await _until("the server answering", served, deadline)
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                tab = DevTools(ws)
                await tab.call("Page.enable")
                await tab.call("Page.addScriptToEvaluateOnNewDocument", source=KEEP_TERMINAL)
                await tab.call("Page.navigate", url=f"http://127.0.0.1:{port}/")

                async def panels():
                    text = await tab.screen()
                    return "Preset" in text and "Start" in text and "moons-mlp" in text and text

                first = await _until("the app's panels in the page", panels, deadline, tab.state)
                assert "tui-trainer" in first

                async def footer():  # before any key press: a page starts without the focus
                    rows = (await tab.screen()).rstrip("\n").splitlines()
                    return rows and "? Help" in rows[-1] and "r Start" in rows[-1]

                await _until("the key hints in the footer", footer, deadline, tab.state)
                await tab.press("r")

                async def first_epoch():
                    return [p for p in runs.glob("*/metrics.jsonl") if p.read_text().strip()]

                metrics = await _until("an epoch of the run started with r", first_epoch, deadline, tab.state)
        assert len(metrics) == 1
        row = json.loads(metrics[0].read_text().splitlines()[0])
        assert row["epoch"] == 1 and row["val_acc"] is not None
        assert "n_samples = 200" in (metrics[0].parent / "config.toml").read_text()  # --set reached the app
    finally:
        _stop(chromium)
        _stop(server)
        log.close()
        _stop_runs(runs)
