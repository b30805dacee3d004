"""The synchronous client against a real server, on SQLite and PostgreSQL (see conftest)."""

from __future__ import annotations

import threading
import uuid
from typing import Any, Iterator

import pytest

import countersign
from countersign import (
    Cancelled,
    Conflict,
    Countersign,
    Denied,
    DeniedByPolicy,
    Expired,
    Grant,
    GrantAlreadyRedeemed,
    GrantRevoked,
    InvalidGrant,
    InvalidRequest,
    InvalidToken,
    NotFound,
    RequestState,
    SlowDown,
    action_hash,
)

from conftest import Server


@pytest.fixture
def cs(server: Server) -> Iterator[Countersign]:
    with Countersign(server.url, api_key=server.api_key) as client:
        yield client


@pytest.fixture
def downstream(server: Server) -> Iterator[Countersign]:
    """A downstream system: no agent credential, only verify and redeem."""
    with Countersign(server.url) as client:
        yield client


def decide_in_background(server: Server, how: str, **reason: str) -> tuple[list[RequestState], Any]:
    """An ``on_pending`` hook that has the owner decide (with their passkey) on another thread
    while the agent waits, and records what the hook was shown."""
    seen: list[RequestState] = []
    threads: list[threading.Thread] = []

    def hook(state: RequestState) -> None:
        seen.append(state)
        if how == "approve":
            t = threading.Thread(target=server.owner.approve, args=(state.id,))
        else:
            t = threading.Thread(
                target=server.owner.deny, args=(state.id, reason["code"], reason["text"])
            )
        threads.append(t)
        t.start()

    hook.threads = threads  # type: ignore[attr-defined]
    return seen, hook


def test_decorator_runs_an_allowed_function_with_its_grant(
    server: Server, cs: Countersign, downstream: Countersign
) -> None:
    calls: list[dict[str, Any]] = []

    @cs.require_approval("reports.read", "warehouse", goal="Monthly revenue report")
    def read_report(month: str, region: str = "EU", *, grant: Grant) -> str:
        calls.append({"month": month, "region": region, "grant": grant})
        return f"report {month}"

    assert read_report("2026-11") == "report 2026-11"
    assert len(calls) == 1
    grant = calls[0]["grant"]
    assert isinstance(grant, Grant)
    claims = grant.claims
    assert claims["aud"] == "warehouse" and claims["sub"] == server.api_agent_id
    # The function's bound arguments, defaults included, were the params that were approved.
    assert claims["authorization_details"][0]["params"] == {"month": "2026-11", "region": "EU"}
    expected = action_hash(
        server.api_agent_id,
        {"type": "reports.read", "target": "warehouse", "params": {"month": "2026-11", "region": "EU"}},
        {"goal": "Monthly revenue report"},
    )
    assert grant.action_hash == expected

    verified = downstream.verify_grant(grant.token, expected_audience="warehouse", action_hash=expected)
    assert verified["jti"] == grant.jti
    assert downstream.redeem(grant.token, action_hash=expected)["jti"] == grant.jti
    with pytest.raises(GrantAlreadyRedeemed) as second:
        downstream.redeem(grant.token)
    assert second.value.status == 409 and second.value.error == "grant_already_redeemed"
    cs.report_outcome(grant, succeeded=True, detail="report sent")


def test_decorator_never_runs_a_function_policy_denies(cs: Countersign) -> None:
    ran: list[str] = []

    @cs.require_approval("db.drop_table", "orders-db", environment="production")
    def drop(table: str) -> None:
        ran.append(table)

    with pytest.raises(Denied) as denied:
        drop("orders")
    assert isinstance(denied.value, DeniedByPolicy)
    assert denied.value.status == 403 and denied.value.error == "denied_by_policy"
    assert denied.value.rule == "no-table-drops"
    assert denied.value.reason_code == "policy"
    assert "change ticket" in denied.value.reason
    assert denied.value.request_id
    assert ran == []


def test_a_person_approves_while_the_agent_waits(
    server: Server, cs: Countersign, downstream: Countersign
) -> None:
    seen, hook = decide_in_background(server, "approve")
    body = {
        "action": {"type": "payments.transfer", "target": "bank-api", "operation": "POST /v2/transfers",
                   "params": {"to": "DE89 3704 0044 0532 0130 00", "amount": "5000.00", "split": [0.1, 1.5e-7, 250.0]}},
        "intent": {"goal": "Pay supplier invoice INV-1042", "rationale": "Approved in FIN-77"},
        "context": {"environment": "production", "data_sensitivity": "confidential",
                    "amount": {"value": "5000.00", "currency": "EUR"}, "task_id": "run-8812",
                    "delegation": [{"actor": "planner-agent", "on_behalf_of": "alice@example.com"}]},
    }
    grant = cs.request_approval(
        "payments.transfer",
        "bank-api",
        operation="POST /v2/transfers",
        params=body["action"]["params"],
        goal="Pay supplier invoice INV-1042",
        rationale="Approved in FIN-77",
        context={"environment": "production", "data_sensitivity": "confidential", "task_id": "run-8812"},
        amount=("5000.00", "EUR"),
        delegation=[{"actor": "planner-agent", "on_behalf_of": "alice@example.com"}],
        expires_in=120,
        on_pending=hook,
    )
    for t in hook.threads:
        t.join()
    # The hook saw the pending request, with the page where the owner decides.
    assert len(seen) == 1 and seen[0].status == "pending"
    assert seen[0].approval_url == f"{server.url}/requests/{seen[0].id}"
    assert seen[0].policy["rule"] == "payments-need-the-owner"
    # The hash computed here from what was sent is the server's (RFC 8785 + SHA-256).
    assert seen[0].action_hash == action_hash(server.api_agent_id, body["action"], body["intent"], body["context"])
    assert grant.request_id == seen[0].id and grant.claims["approvers"]
    # The downstream checks the grant against the action it is about to perform.
    claims = downstream.verify_grant(grant.token, expected_audience="bank-api", action=body)
    assert claims["action_hash"] == seen[0].action_hash
    downstream.redeem(grant.token)


def test_a_person_denies_with_a_reason(server: Server, cs: Countersign) -> None:
    seen, hook = decide_in_background(server, "deny", code="too_risky", text="Not before the audit")
    with pytest.raises(Denied) as denied:
        cs.request_approval("payments.refund", "bank-api", params={"amount": "12.00"}, on_pending=hook)
    for t in hook.threads:
        t.join()
    assert not isinstance(denied.value, DeniedByPolicy)
    assert denied.value.reason_code == "too_risky"
    assert denied.value.reason == "Not before the audit"
    assert denied.value.request_id == seen[0].id


def test_an_undecided_request_expires(cs: Countersign) -> None:
    pending: list[RequestState] = []
    with pytest.raises(Expired) as expired:
        cs.request_approval("payments.transfer", "bank-api", params={"amount": "1.00"},
                            expires_in=1, on_pending=pending.append)
    assert expired.value.request_id == pending[0].id
    assert expired.value.error == "expired_token"


def test_cancel_then_waiting_raises_cancelled(cs: Countersign) -> None:
    state = cs.create_request("payments.transfer", "bank-api", params={"amount": "2.00"})
    assert state.status == "pending"
    assert cs.cancel(state.id).status == "cancelled"
    with pytest.raises(Cancelled):
        cs.wait_for_decision(state.id)
    with pytest.raises(Conflict) as again:
        cs.cancel(state.id)
    assert again.value.status == 409


def test_wait_with_a_timeout_leaves_the_request_pending(cs: Countersign) -> None:
    state = cs.create_request("payments.transfer", "bank-api", params={"amount": "3.00"})
    with pytest.raises(TimeoutError):
        cs.wait_for_decision(state.id, timeout=1)
    assert cs.get_request(state.id).status == "pending"
    cs.cancel(state.id)


def test_polling_faster_than_the_interval_is_slow_down(cs: Countersign) -> None:
    state = cs.create_request("payments.transfer", "bank-api", params={"amount": "3.50"})
    with pytest.raises(SlowDown) as slow:
        for _ in range(3):
            cs.get_request(state.id)
    assert slow.value.status == 429 and slow.value.interval and slow.value.interval >= 1
    # The long-wait is never slow_down, and the client waits out the interval when told.
    with pytest.raises(TimeoutError):
        cs.wait_for_decision(state.id, timeout=1)
    cs.cancel(state.id)


def test_idempotency_key_returns_the_same_request(cs: Countersign) -> None:
    key = f"inv-{uuid.uuid4()}"
    first = cs.create_request("payments.transfer", "bank-api", params={"amount": "4.00"}, idempotency_key=key)
    again = cs.create_request("payments.transfer", "bank-api", params={"amount": "4.00"}, idempotency_key=key)
    assert again.id == first.id
    with pytest.raises(Conflict):
        cs.create_request("payments.transfer", "bank-api", params={"amount": "5.00"}, idempotency_key=key)
    cs.cancel(first.id)


def test_ed25519_agent_end_to_end(server: Server, downstream: Countersign) -> None:
    with Countersign(server.url, private_key=server.key_agent_private, agent_id=server.key_agent_id) as agent:
        # Allowed at once; each call signs a fresh assertion (a replayed jti would be refused).
        for _ in range(3):
            grant = agent.request_approval("reports.read", "warehouse", params={"q": "revenue"})
            assert grant.claims["sub"] == server.key_agent_id
            assert grant.claims["cnf"]["jkt"]
            agent.revoke(grant)
            with pytest.raises(GrantRevoked):
                downstream.redeem(grant.token)

        seen, hook = decide_in_background(server, "approve")
        grant = agent.request_approval("payments.transfer", "bank-api", params={"amount": "9.99"}, on_pending=hook)
        for t in hook.threads:
            t.join()
        claims = downstream.verify_grant(
            grant.token, expected_audience="bank-api",
            action={"action": {"type": "payments.transfer", "target": "bank-api", "params": {"amount": "9.99"}}},
        )
        assert claims["request_id"] == seen[0].id
        downstream.redeem(grant.token)
        agent.report_outcome(grant.jti, "failed", detail="bank was down")

    # A key the server does not know for this agent is refused.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    with Countersign(server.url, private_key=Ed25519PrivateKey.generate(), agent_id=server.key_agent_id) as impostor:
        with pytest.raises(InvalidToken) as refused:
            impostor.create_request("reports.read", "warehouse")
        assert refused.value.status == 401


def test_verify_grant_refuses_tampered_and_misdirected_tokens(cs: Countersign, downstream: Countersign) -> None:
    grant = cs.request_approval("reports.read", "warehouse", params={"rows": 10})
    header, payload, signature = grant.token.split(".")
    # Another payload under the same signature.
    import base64
    import json

    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["authorization_details"][0]["params"]["rows"] = 10_000
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidGrant) as tampered:
        downstream.verify_grant(f"{header}.{forged}.{signature}", expected_audience="warehouse")
    assert tampered.value.field == "signature" and tampered.value.status is None

    with pytest.raises(InvalidGrant) as wrong_aud:
        downstream.verify_grant(grant.token, expected_audience="bank-api")
    assert wrong_aud.value.field == "aud"

    with pytest.raises(InvalidGrant) as wrong_action:
        downstream.verify_grant(grant.token, expected_audience="warehouse",
                                action={"action": {"type": "reports.read", "target": "warehouse", "params": {"rows": 11}}})
    assert wrong_action.value.field == "action_hash"

    # A key the server never published: refetched once, then refused, naming the kid.
    other_kid = base64.urlsafe_b64encode(json.dumps(
        {"alg": "EdDSA", "typ": "countersign-grant+jwt", "kid": "not-a-server-key"}).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidGrant) as unknown:
        downstream.verify_grant(f"{other_kid}.{payload}.{signature}", expected_audience="warehouse")
    assert unknown.value.field == "kid"
    plain_jwt = base64.urlsafe_b64encode(b'{"alg":"EdDSA","typ":"JWT"}').rstrip(b"=").decode()
    with pytest.raises(InvalidGrant) as untyped:
        downstream.verify_grant(f"{plain_jwt}.{payload}.{signature}", expected_audience="warehouse")
    assert untyped.value.field == "typ"

    # The genuine token still verifies, and the server refuses a redemption for another hash.
    downstream.verify_grant(grant.token, expected_audience="warehouse")
    with pytest.raises(InvalidRequest):
        downstream.redeem(grant.token, action_hash="sha256:" + "0" * 64)
    downstream.redeem(grant.token)


def test_errors_are_typed_and_name_the_field(server: Server, cs: Countersign) -> None:
    with pytest.raises(InvalidRequest) as bad:
        cs.create_request("Not A Type!", "bank-api")
    assert bad.value.status == 400
    assert bad.value.field == "action.type"
    assert bad.value.error == "invalid_request" and bad.value.detail
    assert "action.type" in str(bad.value)

    with pytest.raises(InvalidRequest) as too_long:
        cs.create_request("payments.transfer", "bank-api", expires_in=0)
    assert too_long.value.field == "expires_in"

    with pytest.raises(NotFound):
        cs.get_request(str(uuid.uuid4()))

    # Another agent's request does not exist for this one.
    with Countersign(server.url, private_key=server.key_agent_private, agent_id=server.key_agent_id) as other:
        theirs = other.create_request("payments.transfer", "bank-api", params={"amount": "6.00"})
        with pytest.raises(NotFound):
            cs.get_request(theirs.id)
        other.cancel(theirs.id)

    wrong_secret = server.api_key[: -4] + ("aaaa" if not server.api_key.endswith("aaaa") else "bbbb")
    with Countersign(server.url, api_key=wrong_secret) as stranger:
        with pytest.raises(InvalidToken) as refused:
            stranger.create_request("reports.read", "warehouse")
    assert refused.value.status == 401

    with pytest.raises(TypeError, match="when"):
        cs.create_request("reports.read", "warehouse", params={"when": object()})
    with pytest.raises(ValueError, match="api_key"):
        Countersign(server.url).create_request("reports.read", "warehouse")
    with pytest.raises(ValueError, match="agent_id"):
        Countersign(server.url, private_key=server.key_agent_private)


def test_the_package_exports_every_error_class() -> None:
    for name in ("InvalidRequest", "InvalidToken", "Forbidden", "NotFound", "DeniedByPolicy",
                 "SlowDown", "Expired", "GrantAlreadyRedeemed", "GrantExpired", "GrantRevoked",
                 "RateLimited", "PayloadTooLarge", "Conflict", "Cancelled"):
        assert issubclass(getattr(countersign, name), countersign.CountersignError)


def test_a_task_scoped_login_lives_until_the_outcome(server: Server, cs: Countersign) -> None:
    import time

    import psycopg

    state = cs.create_request("orders.query", "orders-db", params={"day": "today"},
                              goal="Count today's orders")
    assert state.status == "approved" and state.grant is not None
    credential = cs.credential(state.grant)
    assert credential.provider == "orders-db" and credential.username.startswith("cs_")
    assert credential.password not in repr(credential)
    with pytest.raises(GrantAlreadyRedeemed):
        cs.credential(state.grant)
    # A real login, checked by its password, with the template role's privileges.
    session = psycopg.connect(credential.connection_string, autocommit=True)
    assert session.execute("SELECT count(*) FROM orders").fetchone() == (1,)
    cs.report_outcome(state.grant, succeeded=True)
    deadline = time.monotonic() + 1.0
    while True:
        try:
            session.execute("SELECT 1")
        except psycopg.Error:
            break
        assert time.monotonic() < deadline, "the login's session outlived its task by 1 s"
        time.sleep(0.01)
    with pytest.raises(psycopg.Error):
        psycopg.connect(credential.connection_string)


def test_the_gateway_sends_the_approved_call_with_a_secret_the_agent_never_holds(
    server: Server, cs: Countersign
) -> None:
    from conftest import BANK_SECRET

    assert server.upstream is not None
    before = len(server.upstream.seen)
    params = {"to": "DE89 3704 0044 0532 0130 00", "amount": "125.00"}
    state = cs.create_request("bank.transfer", "bank-api", operation="POST /v2/transfers",
                              params=params, goal="Pay invoice INV-1042")
    assert state.grant is not None
    with pytest.raises(countersign.Forbidden):
        cs.call_gateway("bank-api", state.grant, "POST", "/v2/transfers",
                        json={**params, "amount": "9125.00"})
    assert len(server.upstream.seen) == before
    answer = cs.call_gateway("bank-api", state.grant, "POST", "/v2/transfers", json=params)
    assert answer.status_code == 201 and answer.json() == {"transfer": "tr_1"}
    method, path, authorization, _ = server.upstream.seen[-1]
    assert (method, path, authorization) == ("POST", "/api/v2/transfers", BANK_SECRET)
    with pytest.raises(GrantAlreadyRedeemed):
        cs.call_gateway("bank-api", state.grant, "POST", "/v2/transfers", json=params)
