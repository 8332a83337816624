"""Fixtures of the labeling app's tests: a database on each backend, a logged-in
client, users, and a real server in a subprocess.

PostgreSQL: a throwaway server is started with initdb/pg_ctl on a temporary data
directory on 127.0.0.1 (as the `postgres` user when we are root, which initdb
refuses), once per test session; each test gets a fresh database on it.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi", reason="the labeling app needs the `label` extra: pip install -e .[label]")

from fastapi.testclient import TestClient  # noqa: E402

from rlhf.label.app import create_app  # noqa: E402
from rlhf.label.auth import create_user  # noqa: E402
from rlhf.label.db import Database  # noqa: E402

PASSWORD = "correct horse battery"
SECRET = "a test secret that is at least thirty-two characters long"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch):
    """argon2 with its production cost takes ~0.15 s a hash on a busy 2-core box; the
    tests hash and verify hundreds of times. The parameters travel inside each hash,
    so these cheap hashes verify anywhere (and the live server re-hashes them at
    login with the real cost). test_security checks the production parameters."""
    from argon2 import PasswordHasher

    from rlhf.label import auth

    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture(scope="session")
def postgres_server():
    """URL of a PostgreSQL server for this test session (skips without the binaries)."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL binaries not found (/usr/lib/postgresql/*/bin): apt-get install postgresql")
    as_user: list[str] = []
    data = Path(tempfile.mkdtemp(prefix="rlhf-label-pg-"))
    if os.geteuid() == 0:  # initdb refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(data, "postgres", "postgres")
    port = free_port()
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True)  # noqa: E731
    run(f"{bindir}/initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    # fsync off: this server holds throwaway test data; durability on PostgreSQL is PostgreSQL's.
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off -c max_connections=200"
    run(f"{bindir}/pg_ctl", "-D", str(data), "-o", opts, "-l", str(data / "log"), "-w", "-t", "60", "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(postgres_server) -> str:
    """One database for the session: CREATE DATABASE copies ~1000 files, so a fresh
    one per test would cost more than the tests; each test truncates it instead."""
    import psycopg

    name = f"label_test_{os.getpid()}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{postgres_server}/{name}"


def empty_postgres_db(url: str) -> str:
    """The session's database with every table emptied and ids restarting at 1."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'").fetchall()
        if tables:
            conn.execute(f"TRUNCATE {', '.join(t for (t,) in tables)} RESTART IDENTITY CASCADE")
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'labels.db'}"
    return empty_postgres_db(request.getfixturevalue("postgres_url"))


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'labels.db'}"


@pytest.fixture
def db(db_url):
    database = Database(db_url)
    yield database
    database.dispose()


def add_user(db: Database, name: str, role: str = "labeler", status: str = "approved") -> None:
    with db.transaction() as s:
        create_user(s, name, PASSWORD, role=role, status=status)


def csrf_of(client: TestClient, path: str = "/login") -> str:
    match = CSRF.search(client.get(path).text)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client: TestClient, name: str, password: str = PASSWORD) -> httpx.Response:
    token = csrf_of(client)
    return client.post("/login", data={"username": name, "password": password, "csrf_token": token},
                       follow_redirects=False)


@pytest.fixture
def app(db):
    return create_app(db, SECRET, secure_cookies=True)


@pytest.fixture
def client_for(app):
    """client_for(username) -> a TestClient logged in as that user (None: logged out)."""
    clients = []

    def make(name: str | None = None) -> TestClient:
        client = TestClient(app, base_url="https://testserver")  # https: the cookie is Secure
        clients.append(client)
        if name is not None:
            response = login(client, name)
            assert response.status_code == 303, response.text
        return client

    yield make
    for c in clients:
        c.close()


class LiveServer:
    """`rlhf label serve` in a subprocess, on loopback."""

    def __init__(self, db_url: str, log_path: Path):
        self.db_url, self.log_path = db_url, log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> "LiveServer":
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rlhf", "label", "serve", "--db", self.db_url, "--host", "127.0.0.1",
             "--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.kill()  # a server that came up too late must not outlive the test
        raise RuntimeError(f"server did not start in {timeout} s: {self.log_path.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, nothing is flushed on the way out."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def live_server(tmp_path):
    """live_server(db_url) -> a started LiveServer; stopped after the test."""
    servers = []

    def make(db_url: str) -> LiveServer:
        server = LiveServer(db_url, tmp_path / f"server{len(servers)}.log").start()
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.stop()


def http_login(client: httpx.Client, name: str, password: str = PASSWORD) -> None:
    token = CSRF.search(client.get("/login").text).group(1)
    r = client.post("/login", data={"username": name, "password": password, "csrf_token": token})
    assert r.status_code == 303, r.text
