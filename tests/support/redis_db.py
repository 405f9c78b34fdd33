"""Claim an empty database of a shared Redis, and clean it without touching anyone else's keys."""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

import redis

CLAIM_KEY = "easyrag-test:claim"


def url_with_db(url: str, db: int) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


def claim_empty_database(base_url: str) -> tuple[str, redis.Redis]:
    """The URL of a database that was empty, claimed with SET NX so parallel runs never share one."""
    base_db = int(urlsplit(base_url).path.lstrip("/") or 0)
    for db in range(15, 0, -1):
        if db == base_db:
            continue
        url = url_with_db(base_url, db)
        client = redis.Redis.from_url(url, decode_responses=True)
        try:
            if client.dbsize() == 0 and client.set(CLAIM_KEY, os.getpid(), nx=True):
                return url, client
        except redis.ResponseError:  # the server has fewer databases
            continue
    raise RuntimeError(f"no empty database on {base_url} to run in")


def delete_keys(client: redis.Redis, keep: tuple[str, ...] = ()) -> None:
    """Delete every key of the claimed database except those starting with ``keep``."""
    doomed = [key for key in client.scan_iter(count=1000) if not key.startswith(keep)]
    for start in range(0, len(doomed), 500):
        client.delete(*doomed[start:start + 500])
