"""The run's control endpoint: a Unix socket only the run's owner can reach.

The socket lives in the run directory (mode 0700) when its path fits a socket address, else
in a private per-user folder (0700, checked to be ours); status.json names it. Connections
authenticate with ``multiprocessing.connection``'s HMAC challenge against ``control.key``
(32 random bytes, mode 0600, in the run directory), so a process that cannot read the run
directory can neither watch the run nor steer it. Messages are JSON in ``send_bytes`` frames
(never pickle): a request ``{"cmd": "stop"}``, a reply ``{"ok": true, "message": "..."}``.
Stdlib only.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
import threading
from multiprocessing.connection import AuthenticationError, Client, Connection, Listener
from pathlib import Path
from typing import Any

from tui_trainer.run.controls import CommandError, Controls, parse_command
from tui_trainer.run.folder import LIVE_STATES, RunDir

ACK_TIMEOUT = 8.0  # seconds the endpoint waits for the engine to act before answering "queued" (under send's 10 s:
# an epoch's end with its checkpoints on a slow disk can hold the loop for seconds)
MAX_SOCKET_PATH = 100  # AF_UNIX addresses hold 107 bytes on Linux


class EndpointError(OSError):
    """The run cannot be reached (gone, not ours, or no endpoint)."""


def _private_dir() -> Path:
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / f"tui-trainer-{os.getuid()}"
    base.mkdir(mode=0o700, exist_ok=True)
    st = base.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise EndpointError(f"{base} is not private to this user; remove it or set XDG_RUNTIME_DIR")
    return base


def socket_path(run: RunDir) -> Path:
    """Where the run's socket goes: in the run directory if the path is short enough."""
    inside = run.path / "control.sock"
    if len(str(inside)) <= MAX_SOCKET_PATH:
        return inside
    digest = hashlib.sha256(str(run.path).encode()).hexdigest()[:16]
    return _private_dir() / f"{digest}.sock"


class ControlServer:
    """Accepts commands for one run on a thread and queues them on ``controls``."""

    def __init__(self, run: RunDir, controls: Controls) -> None:
        self.run, self.controls = run, controls
        key = secrets.token_bytes(32)
        fd = os.open(run.key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        self.address = socket_path(run)
        try:
            self.address.unlink()  # a socket left by a crashed earlier process of this run
        except FileNotFoundError:
            pass
        self._listener = Listener(str(self.address), family="AF_UNIX", authkey=key)
        os.chmod(self.address, 0o600)
        self._closed = False
        self._clients: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._serve, name="control-endpoint", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn = self._listener.accept()
            except (AuthenticationError, EOFError, ConnectionError):
                continue  # a client without the key, or one that hung up during the handshake
            except OSError:
                if self._closed:
                    return
                continue
            client = threading.Thread(target=self._handle, args=(conn,), name="control-client", daemon=True)
            self._clients = [t for t in self._clients if t.is_alive()] + [client]
            client.start()

    def _handle(self, conn: Connection) -> None:
        with conn:
            while True:
                try:
                    raw = conn.recv_bytes(64 * 1024)
                except (EOFError, OSError):
                    return
                try:
                    reply = self.answer(raw)
                except Exception as exc:  # noqa: BLE001 - the endpoint must outlive any one bad request
                    reply = {"ok": False, "error": f"internal error: {type(exc).__name__}"}
                try:
                    conn.send_bytes(json.dumps(reply).encode())
                except OSError:
                    return

    def answer(self, raw: bytes) -> dict[str, Any]:
        """The reply to one request: the engine's acknowledgement, "queued", or what was malformed."""
        try:
            command = parse_command(json.loads(raw))
        except (ValueError, CommandError) as exc:
            return {"ok": False, "error": str(exc)}
        self.controls.submit(command)
        reply = command.wait(ACK_TIMEOUT)
        if reply is None:
            return {"ok": True, "queued": True, "message": f"{command.name}: queued, takes effect at the next step"}
        return reply

    def close(self, final: str = "the run has ended") -> None:
        """Answer every command still waiting (``final``), stop accepting, and remove the socket (the key
        stays: it is harmless without the socket)."""
        for command in self.controls.poll():
            command.ack(False, final)
        for client in self._clients:
            client.join(1.0)  # let each answer reach its client before the process exits
        self._closed = True
        try:
            self._listener.close()
        except OSError:
            pass
        try:
            self.address.unlink()
        except OSError:
            pass


def send(run: RunDir, cmd: str, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
    """Send one command to a run and return its reply; EndpointError if the run cannot be reached."""
    status = run.read_status()
    address = status.get("control")
    state = run.state(status)
    if state not in LIVE_STATES:  # its endpoint may linger a moment after the end: say the end, not a reset
        raise EndpointError(f"run {run.name} has ended ({state}): no control endpoint to send {cmd!r} to")
    if not address:
        raise EndpointError(f"run {run.name} has no control endpoint (state: {state})")
    try:
        key = run.key_path.read_bytes()
    except OSError as exc:
        raise EndpointError(f"cannot read {run.key_path}: {exc.strerror}") from None
    result: dict[str, Any] = {}

    def talk() -> None:
        try:
            with Client(address, family="AF_UNIX", authkey=key) as conn:
                conn.send_bytes(json.dumps({"cmd": cmd, **args}).encode())
                result["reply"] = json.loads(conn.recv_bytes())
        except (OSError, EOFError, AuthenticationError, ValueError) as exc:
            result["error"] = exc

    worker = threading.Thread(target=talk, daemon=True)  # Client has no timeout of its own
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise EndpointError(f"run {run.name} did not answer within {timeout:g} s")
    if "error" in result:
        exc = result["error"]
        if (state := run.state()) not in LIVE_STATES:  # it ended while we were connecting
            raise EndpointError(f"run {run.name} has ended ({state}): no control endpoint to send {cmd!r} to")
        raise EndpointError(f"run {run.name} cannot be reached ({type(exc).__name__}: {exc}); "
                            f"state: {state}") from None
    return result["reply"]
