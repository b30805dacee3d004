"""Fixtures: a real ``countersign serve`` process per database backend, with its first admin
enrolled through a real passkey ceremony, two agents registered with the command line (one
with an API key, one with an Ed25519 key) and a test policy applied.

The binary is ``$COUNTERSIGN_BIN``, else ``target/release/countersign`` of this repository.
PostgreSQL is ``$COUNTERSIGN_TEST_PG_URL`` (default ``postgres://postgres@127.0.0.1:5432``):
each run creates its own database there and drops it afterwards. A missing binary or an
unreachable PostgreSQL fails the run; nothing is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from countersign import public_jwk

from passkey import SoftPasskey

REPO = Path(__file__).resolve().parents[3]
BIN = Path(os.environ.get("COUNTERSIGN_BIN") or REPO / "target/release/countersign")
PG_URL = os.environ.get("COUNTERSIGN_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432").rstrip("/")

ADMIN = "admin@example.com"

# The policy the tests run under: first match wins; anything else needs the owner.
POLICY = """
[[rule]]
id = "reads-run-alone"
description = "Reading reports needs nobody"
action = "reports.*"
outcome = "allow"
grant_ttl_seconds = 120

[[rule]]
id = "no-table-drops"
action = "db.drop_*"
outcome = "deny"
reason = "Agents never drop tables; open a change ticket instead."

[[rule]]
id = "payments-need-the-owner"
action = "payments.*"
outcome = "require"
approvals = 1
approvers = ["owner"]

[[rule]]
id = "order-queries"
description = "A login on the orders database, for the task only"
action = "orders.query"
outcome = "allow"
credential = "orders-db"

[[rule]]
id = "bank-calls"
description = "One call to the bank's API through the gateway"
action = "bank.*"
outcome = "allow"
credential = "bank-api"
"""

#: The header value the bank's API expects; only Countersign holds it.
BANK_SECRET = f"Bearer bank-{uuid.uuid4().hex}"


class Upstream:
    """A real HTTP server on loopback standing in for a bank's API: it records each call
    (method, path, Authorization header, body) and answers 201 with a small JSON body."""

    def __init__(self) -> None:
        import http.server
        import threading

        seen: list[tuple[str, str, str | None, str]] = []
        self.seen = seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length).decode()
                seen.append((self.command, self.path, self.headers.get("authorization"), body))
                payload = b'{"transfer": "tr_1"}'
                self.send_response(201)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _record

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


class Owner:
    """A person in a browser: a session cookie and a passkey, talking to ``/api/ui`` the way
    the pages do (same-origin headers; the ``__Host-`` cookie is kept by hand because it is
    ``Secure`` and the test server is plain http on localhost)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = httpx.Client(base_url=base, timeout=30)
        self.passkey = SoftPasskey(base)
        self.cookie: str | None = None

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        headers = {"origin": self.base, "sec-fetch-site": "same-origin"}
        if self.cookie:
            headers["cookie"] = self.cookie
        r = self.http.post(path, json=body, headers=headers)
        for value in r.headers.get_list("set-cookie"):
            pair = value.split(";", 1)[0]
            if pair.startswith("__Host-countersign="):
                self.cookie = pair
        return r

    def enrol(self, token: str, email: str | None, name: str) -> dict[str, Any]:
        body: dict[str, Any] = {"token": token, "display_name": name, "passkey_name": "soft"}
        if email:
            body["email"] = email
        start = self.post("/api/ui/enrol/start", body)
        assert start.status_code == 200, start.text
        s = start.json()
        credential = self.passkey.register(s["options"])
        finish = self.post(
            "/api/ui/enrol/finish", {"ceremony_id": s["ceremony_id"], "credential": credential}
        )
        assert finish.status_code == 200, finish.text
        me: dict[str, Any] = finish.json()
        return me

    def decide(self, request_id: str, decision: dict[str, Any]) -> dict[str, Any]:
        """A decision ceremony: start, passkey assertion, finish."""
        start = self.post(f"/api/ui/requests/{request_id}/decision/start", decision)
        assert start.status_code == 200, start.text
        s = start.json()
        credential = self.passkey.authenticate(s["options"])
        finish = self.post(
            f"/api/ui/requests/{request_id}/decision/finish",
            {"ceremony_id": s["ceremony_id"], "credential": credential},
        )
        assert finish.status_code == 200, finish.text
        out: dict[str, Any] = finish.json()
        return out

    def approve(self, request_id: str) -> dict[str, Any]:
        return self.decide(request_id, {"decision": "approve"})

    def deny(self, request_id: str, reason_code: str, reason: str) -> dict[str, Any]:
        return self.decide(
            request_id, {"decision": "deny", "reason_code": reason_code, "reason": reason}
        )


@dataclass
class Server:
    backend: str
    url: str
    env: dict[str, str]
    owner: Owner
    api_key: str = ""
    api_agent_id: str = ""
    key_agent_id: str = ""
    key_agent_private: Ed25519PrivateKey | None = None
    log: Path = field(default=Path())
    #: The template role of the orders database's task logins.
    orders_role: str = ""
    upstream: Upstream | None = None

    def cli(self, *args: str) -> str:
        """Runs the command line against this server's database, as an operator would."""
        done = subprocess.run(
            [str(BIN), *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"countersign {' '.join(args)}: {done.stderr}{done.stdout}"
        return done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(what: str, check: Any, within: float) -> Any:
    deadline = time.monotonic() + within
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within}s")
        time.sleep(0.05)


def enrol_link(log: Path) -> str | None:
    for line in log.read_text(errors="replace").splitlines():
        if "/enrol/" in line:
            return line.strip()
    return None


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    assert BIN.is_file(), f"no countersign binary at {BIN} (set COUNTERSIGN_BIN)"
    backend: str = request.param
    tmp = Path(tempfile.mkdtemp(prefix=f"countersign-py-{backend}-"))
    port = free_port()
    url = f"http://localhost:{port}"
    db_name = None
    if backend == "sqlite":
        database_url = f"sqlite://{tmp}/countersign.db?mode=rwc"
    else:
        db_name = f"countersign_py_{uuid.uuid4().hex}"
        with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {db_name}")
        database_url = f"{PG_URL}/{db_name}"
    env = {
        **os.environ,
        "COUNTERSIGN_LISTEN": f"127.0.0.1:{port}",
        "COUNTERSIGN_PUBLIC_URL": url,
        "COUNTERSIGN_DATA_DIR": str(tmp),
        "DATABASE_URL": database_url,
        # The fatigue guards would slow the tests down on purpose: no approve delay, no
        # cooldown after a denial, no collapsing of identical requests.
        "COUNTERSIGN_APPROVE_DELAY_MS": "0",
        "COUNTERSIGN_DENY_COOLDOWN_SECONDS": "0",
        "COUNTERSIGN_COLLAPSE_IDENTICAL": "false",
        "RUST_LOG": "warn",
    }
    log = tmp / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(BIN), "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        def link_or_exit() -> str | None:
            if proc.poll() is not None:
                raise AssertionError(f"countersign serve exited with {proc.returncode}:\n{log.read_text()}")
            return enrol_link(log)

        link = wait_for("the first-admin link", link_or_exit, 30)
        wait_for("the server to answer /healthz", lambda: healthy(url), 30)
        owner = Owner(url)
        owner.enrol(link.rsplit("/", 1)[1], ADMIN, "Ada Admin")
        srv = Server(backend=backend, url=url, env=env, owner=owner, log=log)

        created = json.loads(srv.cli("agent", "create", "--name", "py-api", "--owner", ADMIN, "--json"))
        srv.api_key, srv.api_agent_id = created["api_key"], created["id"]

        key = Ed25519PrivateKey.generate()
        jwk_file = tmp / "agent.jwk"
        jwk_file.write_text(json.dumps(public_jwk(key)))
        created = json.loads(
            srv.cli("agent", "create", "--name", "py-key", "--owner", ADMIN,
                    "--public-key", str(jwk_file), "--json")
        )
        assert created["api_key"] is None and created["jkt"]
        srv.key_agent_id, srv.key_agent_private = created["id"], key

        # The credential providers the policy names: a database of this run's own with a
        # template role whose logins must give their password (.ci/setup --pg), and the bank.
        down_db = f"cs_py_down_{uuid.uuid4().hex[:12]}"
        srv.orders_role = f"orders_rw_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {down_db}")
            conn.execute(f"CREATE ROLE {srv.orders_role} NOLOGIN IN ROLE countersign_password_checked")
        with psycopg.connect(f"{PG_URL}/{down_db}", autocommit=True) as conn:
            conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, item text)")
            conn.execute("INSERT INTO orders (item) VALUES ('anvil')")
            conn.execute(f"GRANT SELECT ON orders TO {srv.orders_role}")
        secret_file = tmp / "provider.secret"
        secret_file.write_text(f"{PG_URL}/{down_db}")
        srv.cli("credential", "add", "orders-db", "--kind", "postgres",
                "--template-role", srv.orders_role, "--secret-file", str(secret_file))
        srv.upstream = Upstream()
        secret_file.write_text(BANK_SECRET)
        srv.cli("credential", "add", "bank-api", "--kind", "http", "--base-url", srv.upstream.url,
                "--operation", "POST /v2/transfers", "--secret-file", str(secret_file))
        secret_file.unlink()

        policy_file = tmp / "policy.toml"
        policy_file.write_text(POLICY)
        srv.cli("policy", "apply", str(policy_file))
        yield srv
        srv.upstream.close()
        owner.http.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as conn:
            if db_name:
                conn.execute(f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")
            if "down_db" in locals():
                conn.execute(f"DROP DATABASE IF EXISTS {down_db} WITH (FORCE)")
        if not request.session.testsfailed:
            shutil.rmtree(tmp, ignore_errors=True)  # kept after a failure: server.log is there

