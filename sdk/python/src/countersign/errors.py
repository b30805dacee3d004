"""Typed errors, one class per stable ``error`` code of the agent contract.

Every error the server answers is ``application/problem+json`` with a machine code in
``error``, a sentence in ``detail`` and, for validation failures, the offending field path
in ``field``. :func:`from_problem` turns such an answer into the matching subclass of
:class:`CountersignError`, so callers catch what they mean (``except Denied``) instead of
comparing strings.

Outcomes that arrive as a request's *state* rather than as an error answer (a human denied,
the request expired or was cancelled while the agent waited) raise the same classes, with
``status`` set to the HTTP status of the answer that carried the state.
"""

from __future__ import annotations

from typing import Any, Mapping


class CountersignError(Exception):
    """Base class: ``error`` is the contract's code, ``status`` the HTTP status (``None`` for
    failures found locally, e.g. a grant that does not verify), ``detail`` a human sentence,
    ``field`` the offending field path when one is at fault, ``body`` the whole problem
    document."""

    #: The code this class stands for (subclasses set it).
    code: str = "error"

    def __init__(
        self,
        detail: str,
        *,
        error: str | None = None,
        status: int | None = None,
        field: str | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.error: str = error or self.code
        self.status: int | None = status
        self.detail: str = detail
        self.field: str | None = field
        self.body: dict[str, Any] = dict(body or {})

    def __str__(self) -> str:
        where = f" (field {self.field})" if self.field else ""
        status = f"{self.status} " if self.status is not None else ""
        return f"{status}{self.error}{where}: {self.detail}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(error={self.error!r}, status={self.status!r}, "
            f"field={self.field!r}, detail={self.detail!r})"
        )


class InvalidRequest(CountersignError):
    """``400 invalid_request``: the body or a parameter is wrong; ``field`` names it."""

    code = "invalid_request"


class InvalidToken(CountersignError):
    """``401 invalid_token``: the API key or the signed assertion was refused (wrong, revoked,
    expired, replayed, or the agent is suspended)."""

    code = "invalid_token"


class Forbidden(CountersignError):
    """``403 forbidden``."""

    code = "forbidden"


class NotFound(CountersignError):
    """``404 not_found`` (also what another agent's request looks like)."""

    code = "not_found"


class Denied(CountersignError):
    """The action must not happen: a person denied it (``reason_code`` is theirs, e.g.
    ``too_risky``), or policy did (:class:`DeniedByPolicy`, ``reason_code == "policy"``).
    ``reason`` is the human sentence; ``request_id`` the request it concerns."""

    code = "access_denied"

    def __init__(
        self,
        detail: str,
        *,
        reason_code: str,
        reason: str,
        request_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(detail, **kwargs)
        self.reason_code = reason_code
        self.reason = reason
        self.request_id = request_id


class DeniedByPolicy(Denied):
    """``403 denied_by_policy``: a policy rule forbids the action; ``rule`` is its id and
    ``reason`` its explanation."""

    code = "denied_by_policy"

    def __init__(self, detail: str, *, rule: str | None = None, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.rule = rule


class SlowDown(CountersignError):
    """``429 slow_down``: polled sooner than ``interval`` seconds without ``wait``."""

    code = "slow_down"

    def __init__(self, detail: str, *, interval: float | None = None, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.interval = interval


class Expired(CountersignError):
    """``expired_token``: the request expired before anyone decided."""

    code = "expired_token"

    def __init__(self, detail: str, *, request_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.request_id = request_id


class Cancelled(CountersignError):
    """The request was cancelled (by this agent, or by a suspension) before a decision."""

    code = "cancelled"

    def __init__(self, detail: str, *, request_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.request_id = request_id


class GrantAlreadyRedeemed(CountersignError):
    """``409 grant_already_redeemed``: a grant is usable once."""

    code = "grant_already_redeemed"


class GrantExpired(CountersignError):
    """``410 grant_expired`` (or, from :meth:`verify_grant`, an ``exp`` in the past)."""

    code = "grant_expired"


class GrantRevoked(CountersignError):
    """``410 grant_revoked``."""

    code = "grant_revoked"


class RateLimited(CountersignError):
    """``429 rate_limited``; ``retry_after`` is the server's ``Retry-After`` in seconds."""

    code = "rate_limited"

    def __init__(self, detail: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.retry_after = retry_after


class PayloadTooLarge(CountersignError):
    """``413 payload_too_large``: bodies are at most 64 KiB."""

    code = "payload_too_large"


class Conflict(CountersignError):
    """``409 conflict``: an Idempotency-Key reused with another body, or cancelling a request
    that is already decided."""

    code = "conflict"


class InvalidGrant(CountersignError):
    """A grant failed local verification (:meth:`verify_grant`): bad signature, wrong ``typ``,
    ``aud``, ``iss`` or ``action_hash``, unknown key. ``field`` names the claim or header at
    fault. ``status`` is ``None``: no server answered this."""

    code = "invalid_grant"


_BY_CODE: dict[str, type[CountersignError]] = {
    cls.code: cls
    for cls in (
        InvalidRequest,
        InvalidToken,
        Forbidden,
        NotFound,
        Denied,
        DeniedByPolicy,
        SlowDown,
        Expired,
        GrantAlreadyRedeemed,
        GrantExpired,
        GrantRevoked,
        RateLimited,
        PayloadTooLarge,
        Conflict,
    )
}


def _seconds(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def from_problem(
    status: int, body: Mapping[str, Any] | None, *, text: str = "", retry_after: str | None = None
) -> CountersignError:
    """The typed error for a server answer with this status and (problem+json) body.

    An answer that is not a problem document (a proxy's HTML error page, say) still becomes a
    :class:`CountersignError`, with ``error = "http_<status>"`` and the start of its text.
    """
    if not body or not isinstance(body.get("error"), str):
        snippet = " ".join(text.split())[:200] or f"HTTP {status}"
        return CountersignError(snippet, error=f"http_{status}", status=status)
    code: str = body["error"]
    detail = str(body.get("detail") or body.get("title") or code)
    common: dict[str, Any] = {
        "error": code,
        "status": status,
        "field": body.get("field") if isinstance(body.get("field"), str) else None,
        "body": body,
    }
    if code == "denied_by_policy":
        reason = str(body.get("explanation") or detail)
        return DeniedByPolicy(
            detail,
            reason_code="policy",
            reason=reason,
            rule=body.get("rule"),
            request_id=body.get("request_id"),
            **common,
        )
    if code == "access_denied":
        return Denied(detail, reason_code=code, reason=detail, **common)
    if code == "slow_down":
        interval = _seconds(body.get("interval")) or _seconds(retry_after)
        return SlowDown(detail, interval=interval, **common)
    if code == "rate_limited":
        return RateLimited(detail, retry_after=_seconds(retry_after), **common)
    cls = _BY_CODE.get(code, CountersignError)
    return cls(detail, **common)
