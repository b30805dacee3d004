"""The MCP server at ``/mcp``, driven by the official MCP Python SDK (``mcp``) over Streamable
HTTP, on SQLite and PostgreSQL (see conftest): what an agent inside an MCP host sees.

Each test connects as the API-key agent with ``Authorization: Bearer``, exactly as a host's
``mcpServers`` entry configures it, and the owner decides with a real passkey ceremony.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import mcp_types as types
import pytest
from mcp.client.client import Client
from mcp.client.session import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from countersign import Countersign, GrantAlreadyRedeemed

from conftest import Server

TOOLS = {"request_approval", "wait_for_approval", "cancel_approval", "report_outcome"}


@asynccontextmanager
async def connect(
    server: Server, *, api_key: str | None = None, mode: str = "legacy", **options: Any
) -> AsyncIterator[Client]:
    """An MCP client for the agent, as a host configured with the server's URL and a header."""
    headers = {"authorization": f"Bearer {api_key or server.api_key}"}
    transport = streamable_http_client(
        f"{server.url}/mcp", http_client=create_mcp_http_client(headers=headers)
    )
    async with Client(transport, mode=mode, **options) as client:  # type: ignore[arg-type]
        yield client


def payment(amount: str = "120.00") -> dict[str, Any]:
    """A request the test policy sends to the owner; unique, so no two tests share one."""
    return {
        "action": {
            "type": "payments.transfer",
            "target": "bank-api",
            "operation": "POST /v2/transfers",
            "params": {"amount": amount, "currency": "EUR", "ref": uuid.uuid4().hex},
        },
        "intent": {"goal": "Pay the supplier's invoice", "rationale": "INV-2291 is due today"},
        "context": {"environment": "production"},
    }


def json_rpc_answer(r: httpx.Response) -> dict[str, Any]:
    """The one JSON-RPC message of a POST's answer, sent as JSON or as a one-event SSE stream."""
    if not r.headers["content-type"].startswith("text/event-stream"):
        answer: dict[str, Any] = r.json()
        return answer
    for line in r.text.splitlines():
        data = line.removeprefix("data:").strip()
        if line.startswith("data:") and data:
            event: dict[str, Any] = json.loads(data)
            return event
    raise AssertionError(f"no message in {r.text!r}")


def structured(result: types.CallToolResult) -> dict[str, Any]:
    assert isinstance(result.structured_content, dict), result
    return result.structured_content


def text(result: types.CallToolResult) -> str:
    first = result.content[0]
    assert isinstance(first, types.TextContent), result
    return first.text


@pytest.mark.asyncio
async def test_tools_are_listed_with_schemas_and_descriptions(server: Server) -> None:
    async with connect(server) as client:
        assert client.protocol_version == "2025-11-25"
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == TOOLS
        for tool in tools.values():
            assert tool.description and len(tool.description) > 60, tool.name
            assert tool.input_schema["type"] == "object"
        ask = tools["request_approval"].input_schema
        assert ask["required"] == ["action"]
        assert {"action", "intent", "context", "expires_in", "wait_seconds"} <= set(ask["properties"])
        assert tools["wait_for_approval"].input_schema["required"] == ["request_id"]
        assert set(tools["report_outcome"].input_schema["required"]) == {"grant_id", "outcome"}


@pytest.mark.asyncio
async def test_pending_then_approved_with_the_passkey_and_the_grant_redeems_once(
    server: Server,
) -> None:
    async with connect(server) as client:
        asked = await client.call_tool("request_approval", {**payment(), "wait_seconds": 0})
        assert not asked.is_error, asked
        state = structured(asked)
        assert state["status"] == "pending"
        assert state["approval_url"].startswith(f"{server.url}/")
        assert state["request_id"] in text(asked) and "wait_for_approval" in text(asked)

        await asyncio.to_thread(server.owner.approve, state["request_id"])

        waited = await client.call_tool("wait_for_approval", {"request_id": state["request_id"]})
        got = structured(waited)
        assert got["status"] == "approved" and got["action_hash"] == state["action_hash"]
        grant = got["grant"]
        assert "report_outcome" in text(waited) and grant["jti"] in text(waited)

        with Countersign(server.url) as downstream:
            claims = downstream.redeem(grant["token"], state["action_hash"])
            assert claims["jti"] == grant["jti"]
            with pytest.raises(GrantAlreadyRedeemed):
                downstream.redeem(grant["token"])

        reported = await client.call_tool(
            "report_outcome",
            {"grant_id": grant["jti"], "outcome": "succeeded", "detail": "Transfer 88412 sent"},
        )
        assert not reported.is_error, reported
        assert structured(reported) == {"grant_id": grant["jti"], "outcome": "succeeded"}


@pytest.mark.asyncio
async def test_denials_say_why_so_the_model_can_change_course(server: Server) -> None:
    async with connect(server) as client:
        asked = structured(
            await client.call_tool("request_approval", {**payment("9999.00"), "wait_seconds": 0})
        )
        await asyncio.to_thread(
            server.owner.deny, asked["request_id"], "too_risky", "Above this week's budget"
        )
        denied = await client.call_tool("wait_for_approval", {"request_id": asked["request_id"]})
        assert not denied.is_error, "a denial is an answer, not a failed call"
        got = structured(denied)
        assert (got["status"], got["reason_code"], got["reason"]) == (
            "denied",
            "too_risky",
            "Above this week's budget",
        )
        assert "Above this week's budget" in text(denied) and "Do not perform" in text(denied)

        drop = {"action": {"type": "db.drop_table", "target": "orders-db", "params": {"table": "orders"}}}
        by_policy = await client.call_tool("request_approval", drop)
        got = structured(by_policy)
        assert (got["status"], got["reason_code"], got["rule"]) == (
            "denied",
            "denied_by_policy",
            "no-table-drops",
        )
        assert "open a change ticket" in text(by_policy)


@pytest.mark.asyncio
async def test_a_bad_field_is_named_and_nothing_is_created(server: Server) -> None:
    async with connect(server) as client:
        bad = await client.call_tool(
            "request_approval", {"action": {"type": "Payments Transfer!", "target": "bank-api"}}
        )
        assert bad.is_error
        assert structured(bad)["error"] == "invalid_request"
        assert structured(bad)["field"] == "action.type"
        assert "action.type" in text(bad)

        too_long = await client.call_tool(
            "request_approval", {**payment(), "wait_seconds": 3600}
        )
        assert too_long.is_error and structured(too_long)["field"] == "wait_seconds"

        unknown = await client.call_tool("wait_for_approval", {"request_id": "req_nope"})
        assert unknown.is_error and structured(unknown)["error"] == "not_found"


@pytest.mark.asyncio
async def test_cancel_and_a_retried_call_with_its_key_asks_once(server: Server) -> None:
    async with connect(server) as client:
        key = uuid.uuid4().hex
        body = {**payment("12.00"), "wait_seconds": 0, "idempotency_key": key}
        first = structured(await client.call_tool("request_approval", body))
        again = structured(await client.call_tool("request_approval", body))
        assert first["request_id"] == again["request_id"]

        cancelled = await client.call_tool("cancel_approval", {"request_id": first["request_id"]})
        assert structured(cancelled)["status"] == "cancelled"
        after = structured(
            await client.call_tool("wait_for_approval", {"request_id": first["request_id"], "wait_seconds": 0})
        )
        assert after["status"] == "cancelled" and "grant" not in after


@pytest.mark.asyncio
async def test_the_host_opens_the_approval_page_and_one_call_gets_the_grant(server: Server) -> None:
    """A host that declared URL elicitation is asked to open the approval page; the person at
    the host (here the owner) approves there while ``request_approval`` is still waiting, and
    that one call answers with the grant."""
    offered: list[types.ElicitRequestURLParams] = []
    approvals: list[asyncio.Task[Any]] = []

    async def elicit(
        context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        assert isinstance(params, types.ElicitRequestURLParams), params
        offered.append(params)
        request_id = params.url.rstrip("/").rsplit("/", 1)[1]
        approvals.append(asyncio.create_task(asyncio.to_thread(server.owner.approve, request_id)))
        return types.ElicitResult(action="accept")

    async with connect(server, elicitation_callback=elicit) as client:
        answer = await client.call_tool("request_approval", {**payment("31.00"), "wait_seconds": 30})
        got = structured(answer)
        assert got["status"] == "approved", answer
        assert [p.url for p in offered] == [f"{server.url}/requests/{got['request_id']}"]
        assert "approv" in offered[0].message
        assert got["grant"]["token"].count(".") == 2
        await asyncio.gather(*approvals)


@pytest.mark.asyncio
async def test_the_2026_protocol_when_the_client_probes_for_it(server: Server) -> None:
    async with connect(server, mode="auto") as client:
        # rmcp answers server/discover, so the SDK adopts the stateless revision.
        assert client.protocol_version == "2026-07-28"
        got = structured(
            await client.call_tool(
                "request_approval",
                {"action": {"type": "reports.read", "target": "warehouse", "params": {"q": 3}}},
            )
        )
        assert got["status"] == "approved" and got["grant"]["token"]


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25"])
def test_hosts_on_each_protocol_version_are_answered_in_it(server: Server, version: str) -> None:
    """A host that speaks only an older version (as many do today) gets that version back."""
    hello = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "pinned-host", "version": "1"},
        },
    }
    r = httpx.post(
        f"{server.url}/mcp",
        json=hello,
        headers={
            "authorization": f"Bearer {server.api_key}",
            "accept": "application/json, text/event-stream",
        },
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert json_rpc_answer(r)["result"]["protocolVersion"] == version


def test_without_the_agents_credential_nothing_is_answered(server: Server) -> None:
    hello = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    for headers in ({}, {"authorization": "Bearer cs_agent_not-a-real-key"}):
        r = httpx.post(
            f"{server.url}/mcp",
            json=hello,
            headers={**headers, "accept": "application/json, text/event-stream"},
            timeout=10,
        )
        assert r.status_code == 401, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.headers["www-authenticate"].lower().startswith("bearer")
        assert r.json()["error"] == "invalid_token"
