"""Countersign for Python: ask a human before an AI agent acts, and verify the grant
downstream.

    from countersign import Countersign, Denied

    cs = Countersign("https://countersign.example.com", api_key="cs_agent_…")
    grant = cs.request_approval("payments.transfer", "bank-api",
                                params={"to": "DE89…", "amount": "5000.00"},
                                goal="Pay invoice INV-1042",
                                on_pending=lambda s: print("approve at", s.approval_url))
    # hand grant.token to the bank API, which calls redeem() once, then:
    cs.report_outcome(grant, succeeded=True)

:class:`Countersign` is synchronous, :class:`AsyncCountersign` the asyncio twin. Every server
error is a typed :class:`CountersignError` (see :mod:`countersign.errors`).
"""

from ._core import GRANT_TYP, load_private_key, public_jwk
from .aio import AsyncCountersign
from .client import Countersign
from .errors import (
    Cancelled,
    Conflict,
    CountersignError,
    Denied,
    DeniedByPolicy,
    Expired,
    Forbidden,
    GrantAlreadyRedeemed,
    GrantExpired,
    GrantRevoked,
    InvalidGrant,
    InvalidRequest,
    InvalidToken,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    SlowDown,
)
from .hashing import action_hash
from .models import Credential, Grant, RequestState

__all__ = [
    "GRANT_TYP",
    "AsyncCountersign",
    "Cancelled",
    "Conflict",
    "Countersign",
    "Credential",
    "CountersignError",
    "Denied",
    "DeniedByPolicy",
    "Expired",
    "Forbidden",
    "Grant",
    "GrantAlreadyRedeemed",
    "GrantExpired",
    "GrantRevoked",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidToken",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "RequestState",
    "SlowDown",
    "action_hash",
    "load_private_key",
    "public_jwk",
]
