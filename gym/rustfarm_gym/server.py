"""Finding, starting and stopping ``farmctl sim serve``.

The server prints ``listening HOST:PORT`` as its first stdout line, so it is
started on ``127.0.0.1:0`` and the kernel picks a free port (no race between
choosing a port and binding it). It runs with ``--exit-on-stdin-eof`` and a
pipe on stdin, so it exits with this process even if Python crashes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import weakref
from pathlib import Path

from .errors import ServerStartError

#: How long to wait for the server to print its address, seconds.
START_TIMEOUT_S = 30.0


def workspace_root() -> Path | None:
    """The rust-farm checkout this package lives in (gym/ is one level down)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "Cargo.toml").is_file() else None


def find_farmctl() -> Path:
    """Locate the ``farmctl`` binary.

    Order: the ``FARMCTL`` environment variable; the newest of the
    workspace's ``target/{release,debug}/farmctl`` (honouring
    ``CARGO_TARGET_DIR``); ``farmctl`` on ``PATH``.

    Raises:
        ServerStartError: nothing found; the message says how to build it.
    """
    env = os.environ.get("FARMCTL")
    if env:
        p = Path(env)
        if p.is_file() and os.access(p, os.X_OK):
            return p
        raise ServerStartError(f"FARMCTL={env} is not an executable file")
    candidates: list[Path] = []
    root = workspace_root()
    target = os.environ.get("CARGO_TARGET_DIR")
    if target:
        candidates += [Path(target) / d / "farmctl" for d in ("release", "debug")]
    if root is not None:
        candidates += [root / "target" / d / "farmctl" for d in ("release", "debug")]
    found = [c for c in candidates if c.is_file() and os.access(c, os.X_OK)]
    if found:
        # The most recently built one: a stale release build must not shadow
        # a fresh debug build (or the reverse).
        return max(found, key=lambda c: c.stat().st_mtime)
    on_path = shutil.which("farmctl")
    if on_path:
        return Path(on_path)
    looked = ", ".join(str(c) for c in candidates) or "(no workspace found)"
    raise ServerStartError(
        "farmctl binary not found: set FARMCTL=/path/to/farmctl or build it with "
        f"`cargo build --release -p farmctl` (looked in {looked} and on PATH)"
    )


class SimServer:
    """A ``farmctl sim serve`` child process on a free loopback port.

    Use as a context manager or call :meth:`close`; it is also stopped when
    garbage-collected or at interpreter exit.
    """

    def __init__(self, farmctl: str | os.PathLike[str] | None = None, *, host: str = "127.0.0.1",
                 timeout_s: float = START_TIMEOUT_S) -> None:
        binary = Path(farmctl) if farmctl is not None else find_farmctl()
        if not binary.is_file():
            raise ServerStartError(f"farmctl binary {binary} does not exist")
        self.binary = binary
        # stderr goes to a file: a pipe nobody reads could fill up and stall
        # the server, and the file is what we quote when start-up fails.
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed after the spawn)
            prefix="farmctl-serve-", suffix=".log", delete=False
        )
        cmd = [str(binary), "sim", "serve", "--addr", f"{host}:0", "--exit-on-stdin-eof"]
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=self._log, close_fds=True)
        except OSError as e:
            raise ServerStartError(f"cannot run {binary}: {e}") from e
        finally:
            # The child holds its own descriptor of the log.
            self._log.close()
        self._finalizer = weakref.finalize(self, _stop, self._proc, self._log.name)
        self.address = self._read_address(timeout_s)

    def _read_address(self, timeout_s: float) -> str:
        assert self._proc.stdout is not None
        line: list[bytes] = []
        out = self._proc.stdout
        reader = threading.Thread(target=lambda: line.append(out.readline()), daemon=True)
        reader.start()
        reader.join(timeout_s)
        text = line[0].decode(errors="replace").strip() if line else ""
        if not text.startswith("listening "):
            code = self._proc.poll()
            tail = self.stderr_tail()
            self.close()
            why = "timed out" if not line else f"exited with status {code}" if code is not None \
                else f"printed {text!r}"
            raise ServerStartError(
                f"{self.binary} sim serve did not report its address ({why}); stderr:\n"
                f"{tail}"
            )
        return text.split(" ", 1)[1]

    def stderr_tail(self, lines: int = 20) -> str:
        """The last lines the server wrote to stderr."""
        try:
            return "\n".join(Path(self._log.name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    @property
    def pid(self) -> int:
        """The server's process id (e.g. to read its CPU time)."""
        return self._proc.pid

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self._proc.poll() is None

    def close(self) -> None:
        """Stop the server (idempotent)."""
        self._finalizer()

    def __enter__(self) -> SimServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stop(proc: subprocess.Popen[bytes], log: str) -> None:
    if proc.poll() is None:
        # Closing stdin asks it to exit; terminate if it takes too long.
        try:
            if proc.stdin:
                proc.stdin.close()
            proc.wait(timeout=5)
        except (subprocess.TimeoutExpired, OSError):
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if proc.stdout:
        proc.stdout.close()
    with contextlib.suppress(OSError):
        os.unlink(log)
