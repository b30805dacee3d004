"""What the sync and async clients share: no I/O here.

Credentials (as ``httpx.Auth``, which works for both client kinds), request bodies, turning
answers into states, grants or typed errors, the decorator's argument binding, and grant
verification against a set of keys. :mod:`countersign.client` and :mod:`countersign.aio` only
add the HTTP calls and the waiting.
"""

from __future__ import annotations

import inspect
import json
import time
import uuid
from decimal import Decimal
from typing import Any, Callable, Generator, Mapping, Sequence

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from . import errors
from .hashing import action_hash as compute_action_hash
from .models import Grant, RequestState

#: The ``typ`` header of every grant (explicit typing, RFC 8725 §3.11).
GRANT_TYP = "countersign-grant+jwt"
#: Lifetime of each signed agent assertion; the contract allows at most 60 s.
ASSERTION_LIFETIME = 30
#: The longest ``wait`` the server takes.
MAX_WAIT = 55
#: Seconds between JWKS refetches caused by an unknown ``kid`` (so garbage tokens cannot make
#: a downstream hammer the server), and how long a fetched JWKS is trusted at most.
JWKS_REFETCH_MIN_INTERVAL = 5.0
JWKS_MAX_AGE = 300.0

PrivateKeyLike = Ed25519PrivateKey | str | bytes | Mapping[str, Any]


class ApiKeyAuth(httpx.Auth):
    """``Authorization: Bearer cs_agent_…``."""

    def __init__(self, api_key: str) -> None:
        if not api_key.startswith("cs_agent_"):
            raise ValueError("api_key: expected a Countersign agent key (cs_agent_<id>_<secret>)")
        self._header = f"Bearer {api_key}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request

    def __repr__(self) -> str:
        return "ApiKeyAuth(<redacted>)"


def load_private_key(key: PrivateKeyLike) -> Ed25519PrivateKey:
    """An Ed25519 private key from a key object, PEM text, or a JWK (dict or JSON text with
    ``d``)."""
    if isinstance(key, Ed25519PrivateKey):
        return key
    if isinstance(key, Mapping) or (isinstance(key, str) and key.lstrip().startswith("{")):
        jwk = json.loads(key) if isinstance(key, str) else dict(key)
        loaded = jwt.PyJWK(jwk, algorithm="EdDSA").key
    else:
        data = key.encode() if isinstance(key, str) else key
        loaded = load_pem_private_key(data, password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError("private_key: expected an Ed25519 private key")
    return loaded


def public_jwk(key: Ed25519PrivateKey) -> dict[str, Any]:
    """The public half as a JWK, the form ``countersign agent create --public-key`` takes."""
    jwk: dict[str, Any] = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key()))
    return jwk


class AssertionAuth(httpx.Auth):
    """A fresh signed JWT per call: ``alg`` EdDSA, ``iss`` = ``sub`` = agent id, ``aud`` = the
    server's public URL, ``iat``, ``exp`` (30 s later) and a unique ``jti`` (the server refuses a
    replayed one, so every call, retries included, signs anew)."""

    def __init__(self, agent_id: str, private_key: PrivateKeyLike, audience: str) -> None:
        if not agent_id:
            raise ValueError("agent_id: required with private_key (the assertion's iss and sub)")
        self.agent_id = agent_id
        self._key = load_private_key(private_key)
        self._audience = audience

    def assertion(self) -> str:
        now = int(time.time())
        claims = {
            "iss": self.agent_id,
            "sub": self.agent_id,
            "aud": self._audience,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._key, algorithm="EdDSA")

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.assertion()}"
        yield request

    def __repr__(self) -> str:
        return f"AssertionAuth(agent_id={self.agent_id!r})"


def make_auth(
    api_key: str | None,
    private_key: PrivateKeyLike | None,
    agent_id: str | None,
    audience: str,
) -> httpx.Auth | None:
    if api_key is not None and private_key is not None:
        raise ValueError("api_key, private_key: give one credential, not both")
    if api_key is not None:
        return ApiKeyAuth(api_key)
    if private_key is not None:
        return AssertionAuth(agent_id or "", private_key, audience)
    return None


def agent_id_of(api_key: str | None, auth: httpx.Auth | None) -> str | None:
    """The agent id, where the credential says it (``cs_agent_<id>_<secret>``; ids hold no
    underscore)."""
    if isinstance(auth, AssertionAuth):
        return auth.agent_id
    if api_key:
        rest = api_key[len("cs_agent_") :]
        return rest.rsplit("_", 1)[0] if "_" in rest else None
    return None


# --- request bodies -------------------------------------------------------------------------


def _json_safe(value: Any, where: str) -> Any:
    """``value`` as plain JSON, or a ``TypeError`` naming where a value is not JSON. Decimals
    become strings (the contract keeps amounts as decimal text)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: keys must be strings, got {k!r}")
            out[k] = _json_safe(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"{where}: {type(value).__name__} is not JSON; pass params explicitly")


def request_body(
    action_type: str,
    target: str,
    *,
    params: Mapping[str, Any] | None = None,
    operation: str | None = None,
    goal: str | None = None,
    rationale: str | None = None,
    context: Mapping[str, Any] | None = None,
    environment: str | None = None,
    data_sensitivity: str | None = None,
    amount: Mapping[str, Any] | tuple[Any, str] | None = None,
    task_id: str | None = None,
    delegation: Sequence[Mapping[str, Any]] | None = None,
    expires_in: int | None = None,
) -> dict[str, Any]:
    """The ``POST /api/v1/requests`` body. The keyword conveniences (``environment``,
    ``amount=("5000.00", "EUR")`` …) are merged into ``context``; the server validates."""
    action: dict[str, Any] = {"type": action_type, "target": target}
    if operation is not None:
        action["operation"] = operation
    if params is not None:
        action["params"] = _json_safe(params, "params")
    body: dict[str, Any] = {"action": action}
    intent = {k: v for k, v in (("goal", goal), ("rationale", rationale)) if v is not None}
    if intent:
        body["intent"] = intent
    ctx: dict[str, Any] = dict(_json_safe(context, "context") or {})
    if isinstance(amount, tuple):
        amount = {"value": amount[0], "currency": amount[1]}
    extra = {
        "environment": environment,
        "data_sensitivity": data_sensitivity,
        "amount": _json_safe(amount, "amount"),
        "task_id": task_id,
        "delegation": _json_safe(delegation, "delegation"),
    }
    ctx.update({k: v for k, v in extra.items() if v is not None})
    if ctx:
        body["context"] = ctx
    if expires_in is not None:
        body["expires_in"] = expires_in
    return body


# --- answers --------------------------------------------------------------------------------


def raise_for_problem(response: httpx.Response) -> None:
    """Raises the typed error for an answer that is not a success."""
    if response.is_success:
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    raise errors.from_problem(
        response.status_code,
        body if isinstance(body, dict) else None,
        text=response.text,
        retry_after=response.headers.get("retry-after"),
    )


def json_of(response: httpx.Response) -> dict[str, Any]:
    raise_for_problem(response)
    body = response.json()
    if not isinstance(body, dict):
        raise errors.CountersignError(
            "expected a JSON object", error="bad_response", status=response.status_code
        )
    return body


def outcome(state: RequestState) -> Grant | None:
    """The grant of a decided request, ``None`` while pending, or the error its end means."""
    if state.status == "approved":
        if state.grant is None:
            raise errors.CountersignError(
                "approved without a grant", error="bad_response", status=200
            )
        return state.grant
    if state.status == "pending":
        return None
    if state.status == "denied":
        decision = state.decision or {}
        code = str(decision.get("reason_code") or "denied")
        reason = str(decision.get("reason") or code)
        if code == "policy":
            return _raise(
                errors.DeniedByPolicy(
                    reason,
                    reason_code=code,
                    reason=reason,
                    rule=state.policy.get("rule"),
                    request_id=state.id,
                    status=200,
                    body=state.raw,
                )
            )
        return _raise(
            errors.Denied(
                f"denied ({code}): {reason}",
                reason_code=code,
                reason=reason,
                request_id=state.id,
                status=200,
                body=state.raw,
            )
        )
    if state.status == "expired":
        return _raise(
            errors.Expired(
                f"request {state.id} expired before a decision",
                request_id=state.id,
                status=200,
                body=state.raw,
            )
        )
    return _raise(
        errors.Cancelled(
            f"request {state.id} was cancelled", request_id=state.id, status=200, body=state.raw
        )
    )


def _raise(error: errors.CountersignError) -> Grant | None:
    raise error


def next_wait(deadline: float | None) -> int:
    """The ``wait`` for the next long-poll: as long as the server allows, within ``deadline``
    (a ``time.monotonic()`` value)."""
    if deadline is None:
        return MAX_WAIT
    return max(1, min(MAX_WAIT, int(deadline - time.monotonic() + 0.999)))


def wait_timeout(wait: int) -> httpx.Timeout:
    """The server holds a long-poll up to ``wait`` seconds: read for longer than that."""
    return httpx.Timeout(10.0, read=wait + 15.0)


def outcome_body(succeeded: bool | str, detail: str | None) -> dict[str, Any]:
    if isinstance(succeeded, bool):
        result = "succeeded" if succeeded else "failed"
    elif succeeded in ("succeeded", "failed"):
        result = succeeded
    else:
        raise ValueError(f"outcome: expected True/False or 'succeeded'/'failed', got {succeeded!r}")
    body: dict[str, Any] = {"outcome": result}
    if detail is not None:
        body["detail"] = detail
    return body


def jti_of(grant: Grant | str) -> str:
    return grant.jti if isinstance(grant, Grant) else grant


def refused_by_countersign(response: httpx.Response) -> bool:
    """Whether a gateway answer is Countersign's own refusal (its problem+json, whose ``type``
    is ``/errors/<code>``) rather than whatever the upstream answered."""
    if not response.headers.get("content-type", "").startswith("application/problem+json"):
        return False
    try:
        kind = response.json().get("type", "")
    except ValueError:
        return False
    return isinstance(kind, str) and kind.startswith("/errors/")


def gateway_call(provider: str, grant: Grant | str, path: str) -> tuple[str, dict[str, str]]:
    """The URL path and headers of a call through the gateway ``provider``: ``path`` is the
    upstream path (with its query) exactly as approved in ``action.operation``."""
    if not path.startswith("/"):
        raise ValueError("path must start with / (the upstream path, as approved)")
    token = grant.token if isinstance(grant, Grant) else grant
    return f"/gw/{provider}{path}", {"countersign-grant": token}


# --- the decorator --------------------------------------------------------------------------

#: Arguments never sent as ``params``: the receiver of a method, and the grant itself.
SKIPPED_ARGUMENTS = ("self", "cls", "grant")


def takes_grant(fn: Callable[..., Any]) -> bool:
    """True when ``fn`` has a parameter named ``grant`` to receive its grant."""
    parameters = inspect.signature(fn).parameters
    return "grant" in parameters


def bound_params(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments by name, defaults applied, as the request's ``params``."""
    signature = inspect.signature(fn)
    given = {k: v for k, v in kwargs.items() if k != "grant"}
    bound = signature.bind_partial(*args, **given)
    bound.apply_defaults()
    params: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        if name in SKIPPED_ARGUMENTS:
            continue
        if kind is inspect.Parameter.VAR_KEYWORD:
            params.update(_json_safe(value, name))
        else:
            params[name] = _json_safe(value, name)
    return params


# --- grant verification ---------------------------------------------------------------------


class JwksCache:
    """The server's verification keys by ``kid``, with when they were fetched. The clients
    fetch; this decides when a fetch is due."""

    def __init__(self) -> None:
        self.keys: dict[str, jwt.PyJWK] = {}
        self.fetched_at: float | None = None

    def needs_fetch(self, kid: str) -> bool:
        now = time.monotonic()
        if self.fetched_at is None or now - self.fetched_at > JWKS_MAX_AGE:
            return True
        # An unknown kid may be a new key (rotation): refetch, but not more often than this.
        return kid not in self.keys and now - self.fetched_at > JWKS_REFETCH_MIN_INTERVAL

    def load(self, jwks: Mapping[str, Any]) -> None:
        keys: dict[str, jwt.PyJWK] = {}
        for entry in jwks.get("keys", []):
            if entry.get("kty") == "OKP" and entry.get("crv") == "Ed25519" and "kid" in entry:
                keys[entry["kid"]] = jwt.PyJWK(entry, algorithm="EdDSA")
        self.keys = keys
        self.fetched_at = time.monotonic()


def grant_kid(token: str) -> str:
    """The ``kid`` of a grant, after checking the header's ``alg`` and ``typ``."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as e:
        raise errors.InvalidGrant(f"not a compact JWS: {e}", field="token") from None
    if header.get("typ") != GRANT_TYP:
        raise errors.InvalidGrant(
            f"typ must be {GRANT_TYP}, got {header.get('typ')!r}", field="typ"
        )
    if header.get("alg") != "EdDSA":
        raise errors.InvalidGrant(f"alg must be EdDSA, got {header.get('alg')!r}", field="alg")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise errors.InvalidGrant("the grant names no kid", field="kid")
    return kid


def verify_with(
    token: str,
    key: jwt.PyJWK | None,
    *,
    kid: str,
    expected_audience: str,
    issuer: str,
    action_hash: str | None,
    action: Mapping[str, Any] | None,
    leeway: float,
) -> dict[str, Any]:
    """Checks a grant with its key; returns its claims or raises :class:`errors.InvalidGrant`
    (``field`` naming the claim) or :class:`errors.GrantExpired`."""
    if key is None:
        raise errors.InvalidGrant(f"no key {kid!r} in the server's JWKS", field="kid")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=["EdDSA"],
            audience=expected_audience,
            issuer=issuer,
            leeway=leeway,
            options={"require": ["iss", "sub", "aud", "iat", "exp", "jti", "action_hash"]},
        )
    except jwt.ExpiredSignatureError:
        raise errors.GrantExpired("the grant has expired", field="exp") from None
    except jwt.InvalidAudienceError:
        raise errors.InvalidGrant(
            f"the grant is for another audience, not {expected_audience!r}", field="aud"
        ) from None
    except jwt.InvalidIssuerError:
        raise errors.InvalidGrant(f"the grant was not issued by {issuer!r}", field="iss") from None
    except jwt.MissingRequiredClaimError as e:
        raise errors.InvalidGrant(str(e), field=e.claim) from None
    except jwt.InvalidSignatureError:
        raise errors.InvalidGrant("the grant's signature does not verify", field="signature") from None
    except jwt.PyJWTError as e:
        raise errors.InvalidGrant(f"the grant does not verify: {e}", field="token") from None
    expected = action_hash
    if action is not None:
        expected = compute_action_hash(
            str(claims["sub"]), action["action"], action.get("intent"), action.get("context")
        )
        if action_hash is not None and action_hash != expected:
            raise ValueError("action_hash, action: they disagree; pass one")
    if expected is not None and claims["action_hash"] != expected:
        raise errors.InvalidGrant(
            f"the grant is for action {claims['action_hash']}, not {expected}", field="action_hash"
        )
    return claims
