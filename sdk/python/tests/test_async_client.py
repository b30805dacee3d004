"""The asyncio client, and the sync client's decorator on ``async def`` functions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from countersign import (
    AsyncCountersign,
    Countersign,
    Denied,
    DeniedByPolicy,
    Grant,
    GrantAlreadyRedeemed,
    InvalidGrant,
    InvalidRequest,
    RequestState,
    action_hash,
)

from conftest import Server


@pytest.mark.asyncio
async def test_async_decorator_allow_and_deny(server: Server) -> None:
    async with AsyncCountersign(server.url, api_key=server.api_key) as cs:
        ran: list[Any] = []

        @cs.require_approval("reports.read", "warehouse", goal="Quarterly numbers")
        async def fetch(quarter: str, grant: Grant) -> str:
            ran.append((quarter, grant))
            return quarter.upper()

        @cs.require_approval("db.drop_index", "orders-db")
        async def drop(index: str) -> None:
            ran.append(index)

        assert await fetch("q3") == "Q3"
        quarter, grant = ran[0]
        assert grant.claims["authorization_details"][0]["params"] == {"quarter": "q3"}

        with pytest.raises(DeniedByPolicy) as denied:
            await drop("idx_orders")
        assert denied.value.rule == "no-table-drops"
        assert ran == [("q3", grant)]

        with pytest.raises(TypeError, match="not async"):

            @cs.require_approval("reports.read", "warehouse")
            def plain() -> None:  # pragma: no cover - never called
                pass


@pytest.mark.asyncio
async def test_async_human_decisions_and_downstream(server: Server) -> None:
    async def approve(state: RequestState) -> None:
        # Awaited by the client before it starts waiting: the owner decides on a thread.
        asyncio.get_running_loop().run_in_executor(None, server.owner.approve, state.id)

    async def deny(state: RequestState) -> None:
        asyncio.get_running_loop().run_in_executor(
            None, server.owner.deny, state.id, "wrong_details", "Wrong IBAN"
        )

    async with AsyncCountersign(server.url, api_key=server.api_key) as cs, AsyncCountersign(server.url) as downstream:
        params = {"to": "DE02 1203 0000 0000 2020 51", "amount": "70.00"}
        approved, refused = await asyncio.gather(
            cs.request_approval("payments.transfer", "bank-api", params=params, on_pending=approve),
            cs.request_approval("payments.transfer", "bank-api", params={"amount": "71.00"}, on_pending=deny),
            return_exceptions=True,
        )
        assert isinstance(approved, Grant), approved
        assert isinstance(refused, Denied) and refused.reason_code == "wrong_details"
        assert refused.reason == "Wrong IBAN"

        expected = action_hash(server.api_agent_id, {"type": "payments.transfer", "target": "bank-api", "params": params})
        claims = await downstream.verify_grant(approved.token, expected_audience="bank-api", action_hash=expected)
        assert claims["jti"] == approved.jti
        with pytest.raises(InvalidGrant) as wrong:
            await downstream.verify_grant(approved.token, expected_audience="warehouse")
        assert wrong.value.field == "aud"
        await downstream.redeem(approved.token)
        with pytest.raises(GrantAlreadyRedeemed):
            await downstream.redeem(approved.token)
        await cs.report_outcome(approved, True)

        with pytest.raises(InvalidRequest) as bad:
            await cs.create_request("payments.transfer", "")
        assert bad.value.field == "action.target"


@pytest.mark.asyncio
async def test_async_ed25519_agent(server: Server) -> None:
    async with AsyncCountersign(server.url, private_key=server.key_agent_private, agent_id=server.key_agent_id) as agent:
        grants = await asyncio.gather(
            *(agent.request_approval("reports.read", "warehouse", params={"n": n}) for n in range(5))
        )
        assert len({g.jti for g in grants}) == 5
        for g in grants:
            await agent.revoke(g)


@pytest.mark.asyncio
async def test_sync_client_decorates_async_functions_off_the_loop(server: Server) -> None:
    with Countersign(server.url, api_key=server.api_key) as cs:
        ran: list[str] = []

        @cs.require_approval("reports.export", "warehouse")
        async def export(fmt: str = "csv", *, grant: Grant) -> str:
            ran.append(grant.jti)
            return fmt

        # The event loop stays free while the sync client asks (it runs on a worker thread).
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        t = asyncio.create_task(ticker())
        assert await export() == "csv"
        t.cancel()
        assert len(ran) == 1 and ticks > 0
