"""What the server answers, as typed values: a request's state and a grant."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Mapping

import jwt

Status = Literal["pending", "approved", "denied", "expired", "cancelled"]


def _parse_time(text: str) -> datetime:
    # RFC 3339 as the server writes it; Python 3.10's fromisoformat does not take "Z".
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Grant:
    """A single-use, short-lived grant for one approved action.

    ``token`` is the compact JWS to hand to the downstream system, which redeems it once.
    ``claims`` are the token's claims as the agent received them (decoded, *not* verified:
    a downstream system verifies with :meth:`Countersign.verify_grant`).
    """

    token: str
    jti: str
    expires_at: datetime
    claims: dict[str, Any]
    request_id: str | None = None

    @property
    def action_hash(self) -> str | None:
        """The ``action_hash`` the grant is bound to."""
        value = self.claims.get("action_hash")
        return value if isinstance(value, str) else None

    def __repr__(self) -> str:
        # The token is a bearer credential until redeemed: keep it out of logs and tracebacks.
        return f"Grant(jti={self.jti!r}, expires_at={self.expires_at.isoformat()!r}, token=<redacted>)"

    @classmethod
    def from_view(cls, view: Mapping[str, Any], request_id: str | None = None) -> Grant:
        token = str(view["token"])
        claims = jwt.decode(token, options={"verify_signature": False})
        return cls(
            token=token,
            jti=str(view["jti"]),
            expires_at=_parse_time(str(view["expires_at"])),
            claims=claims,
            request_id=request_id or claims.get("request_id"),
        )


@dataclass(frozen=True)
class RequestState:
    """A request as the server last described it (the body of every request endpoint).

    While ``status`` is ``pending``, ``approval_url`` is the page where the owner decides:
    show it to whoever should approve.
    """

    id: str
    status: Status
    action_hash: str
    expires_at: datetime
    interval: float
    approval_url: str
    policy: dict[str, Any]
    approvals: dict[str, Any]
    decision: dict[str, Any] | None = None
    grant: Grant | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> RequestState:
        grant = body.get("grant")
        return cls(
            id=str(body["id"]),
            status=body["status"],
            action_hash=str(body["action_hash"]),
            expires_at=_parse_time(str(body["expires_at"])),
            interval=float(body.get("interval") or 1),
            approval_url=str(body.get("approval_url") or ""),
            policy=dict(body.get("policy") or {}),
            approvals=dict(body.get("approvals") or {}),
            decision=dict(body["decision"]) if body.get("decision") else None,
            grant=Grant.from_view(grant, str(body["id"])) if grant else None,
            raw=dict(body),
        )


@dataclass(frozen=True)
class Credential:
    """A task-scoped credential: a login that exists for this one approved task.

    Released once (:meth:`Countersign.credential`) and removed when the task ends: when the
    outcome is reported, the grant revoked, the agent suspended, or at ``expires_at``.
    ``password`` and ``connection_string`` are secrets: they stay out of ``repr``.
    """

    jti: str
    provider: str
    type: str
    username: str
    password: str
    connection_string: str
    expires_at: datetime

    def __repr__(self) -> str:
        return (
            f"Credential(provider={self.provider!r}, username={self.username!r}, "
            f"expires_at={self.expires_at.isoformat()!r}, password=<redacted>)"
        )

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Credential:
        return cls(
            jti=str(body["jti"]),
            provider=str(body["provider"]),
            type=str(body["type"]),
            username=str(body["username"]),
            password=str(body["password"]),
            connection_string=str(body["connection_string"]),
            expires_at=_parse_time(str(body["expires_at"])),
        )
