"""The synchronous client, :class:`Countersign`.

An agent asks before it acts (:meth:`Countersign.request_approval`, or the
:meth:`Countersign.require_approval` decorator), receives a :class:`~countersign.Grant`, hands
it to the downstream system and reports the outcome. A downstream system uses the same class
without credentials to verify (:meth:`Countersign.verify_grant`) and redeem
(:meth:`Countersign.redeem`) grants.
"""

from __future__ import annotations

import functools
import inspect
import time
from typing import Any, Callable, Mapping, ParamSpec, Sequence, TypeVar

import httpx

from . import _core, errors
from .models import Credential, Grant, RequestState

P = ParamSpec("P")
R = TypeVar("R")

#: Called with the request's state when it must wait for a person (e.g. to show
#: ``state.approval_url``).
PendingHook = Callable[[RequestState], object]


class Countersign:
    """A client for one Countersign server.

    ``url`` is where to reach it; ``public_url`` its public URL (the ``aud`` of Ed25519
    assertions and the ``iss`` of grants) when that differs, e.g. behind a proxy.
    Credentials: ``api_key="cs_agent_…"``, or ``private_key=`` (an Ed25519 key: a
    ``cryptography`` key object, PEM, or a JWK with ``d``) with ``agent_id=``. With neither,
    only the downstream calls (:meth:`verify_grant`, :meth:`redeem`) work.

    ``on_pending`` is called whenever a request has to wait for a person.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        private_key: _core.PrivateKeyLike | None = None,
        agent_id: str | None = None,
        public_url: str | None = None,
        on_pending: PendingHook | None = None,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.public_url = (public_url or url).rstrip("/")
        self._auth = _core.make_auth(api_key, private_key, agent_id, self.public_url)
        self.agent_id = agent_id or _core.agent_id_of(api_key, self._auth)
        self.on_pending = on_pending
        self._http = http or httpx.Client(timeout=timeout)
        self._owns_http = http is None
        self._jwks = _core.JwksCache()

    # --- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Countersign:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing ---------------------------------------------------------------------------

    def _agent(self) -> httpx.Auth:
        if self._auth is None:
            raise ValueError("api_key or private_key: this call needs the agent's credential")
        return self._auth

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        auth: bool = True,
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Response:
        extra: dict[str, Any] = {}
        if timeout is not None:
            extra["timeout"] = timeout
        return self._http.request(
            method,
            self.url + path,
            json=json,
            headers=headers,
            auth=self._agent() if auth else None,
            **extra,
        )

    # --- asking -----------------------------------------------------------------------------

    def create_request(
        self,
        action_type: str,
        target: str,
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> RequestState:
        """``POST /api/v1/requests``: the request's state (``pending``, or ``approved`` with its
        grant). Raises :class:`~countersign.DeniedByPolicy` when a rule forbids it. ``fields``
        are :meth:`request_approval`'s."""
        body = _core.request_body(action_type, target, **fields)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return RequestState.from_json(
            _core.json_of(self._call("POST", "/api/v1/requests", json=body, headers=headers))
        )

    def get_request(self, request_id: str, *, wait: int = 0) -> RequestState:
        """``GET /api/v1/requests/{id}?wait=…``: waits up to ``wait`` seconds (at most 55) for
        a decision, answering the moment there is one."""
        return RequestState.from_json(
            _core.json_of(
                self._call(
                    "GET",
                    f"/api/v1/requests/{request_id}?wait={wait}",
                    timeout=_core.wait_timeout(wait),
                )
            )
        )

    def wait_for_decision(self, request_id: str, *, timeout: float | None = None) -> Grant:
        """Long-waits until the request is decided and returns its grant, or raises
        :class:`~countersign.Denied`, :class:`~countersign.Expired` or
        :class:`~countersign.Cancelled`. With ``timeout`` (seconds), raises
        :class:`TimeoutError` if it is still pending then (the request stays open)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = _core.next_wait(deadline)
            try:
                state = self.get_request(request_id, wait=wait)
            except errors.SlowDown as e:
                time.sleep(e.interval or 1.0)
                continue
            grant = _core.outcome(state)
            if grant is not None:
                return grant
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"request {request_id} is still pending")

    def request_approval(
        self,
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
        idempotency_key: str | None = None,
        on_pending: PendingHook | None = None,
        timeout: float | None = None,
    ) -> Grant:
        """Asks for approval and waits for the decision.

        Returns the :class:`~countersign.Grant` (at once when policy allows the action);
        raises :class:`~countersign.Denied` (a person said no, with ``reason_code`` and
        ``reason``), :class:`~countersign.DeniedByPolicy`, :class:`~countersign.Expired` or
        :class:`~countersign.Cancelled`. While a person must decide, ``on_pending`` (or the
        client's) is called once with the pending state, whose ``approval_url`` is the page
        to open.
        """
        state = self.create_request(
            action_type,
            target,
            params=params,
            operation=operation,
            goal=goal,
            rationale=rationale,
            context=context,
            environment=environment,
            data_sensitivity=data_sensitivity,
            amount=amount,
            task_id=task_id,
            delegation=delegation,
            expires_in=expires_in,
            idempotency_key=idempotency_key,
        )
        grant = _core.outcome(state)
        if grant is not None:
            return grant
        hook = on_pending or self.on_pending
        if hook is not None:
            hook(state)
        return self.wait_for_decision(state.id, timeout=timeout)

    def require_approval(
        self,
        action_type: str,
        target: str,
        **fields: Any,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorator: asks before every call, with the call's arguments (by name, defaults
        applied; not ``self``, ``cls`` or ``grant``) as ``params``, and runs the function only
        once approved. A function with a ``grant`` parameter receives the grant there.
        ``fields`` are :meth:`request_approval`'s keywords (``goal=``, ``operation=`` …).

        Works on async functions too: the wait then runs in a worker thread, off the event
        loop (:class:`~countersign.AsyncCountersign` waits natively).
        """

        def decorate(fn: Callable[P, R]) -> Callable[P, R]:
            passes_grant = _core.takes_grant(fn)

            def ask(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
                params = _core.bound_params(fn, args, kwargs)
                grant = self.request_approval(action_type, target, params=params, **fields)
                return {**kwargs, "grant": grant} if passes_grant else kwargs

            if inspect.iscoroutinefunction(fn):
                import asyncio

                @functools.wraps(fn)
                async def run_async(*args: Any, **kwargs: Any) -> Any:
                    call_kwargs = await asyncio.to_thread(ask, args, kwargs)
                    return await fn(*args, **call_kwargs)

                return run_async  # type: ignore[return-value]

            @functools.wraps(fn)
            def run(*args: P.args, **kwargs: P.kwargs) -> R:
                return fn(*args, **ask(args, kwargs))

            return run

        return decorate

    # --- after the decision -----------------------------------------------------------------

    def cancel(self, request_id: str) -> RequestState:
        """Withdraws a pending request (``409 conflict`` once decided)."""
        return RequestState.from_json(
            _core.json_of(self._call("POST", f"/api/v1/requests/{request_id}/cancel"))
        )

    def revoke(self, grant: Grant | str) -> dict[str, Any]:
        """Gives an unused grant up (by :class:`~countersign.Grant` or ``jti``)."""
        return _core.json_of(self._call("POST", f"/api/v1/grants/{_core.jti_of(grant)}/revoke"))

    def report_outcome(
        self, grant: Grant | str, succeeded: bool | str, detail: str | None = None
    ) -> dict[str, Any]:
        """Reports what happened (``True``/``"succeeded"`` or ``False``/``"failed"``),
        closing the request's audit chain."""
        return _core.json_of(
            self._call(
                "POST",
                f"/api/v1/grants/{_core.jti_of(grant)}/report",
                json=_core.outcome_body(succeeded, detail),
            )
        )

    # --- task-scoped credentials -------------------------------------------------------------

    def credential(self, grant: Grant | str) -> Credential:
        """Redeems the grant for the credential its policy rule releases (``credential =
        "NAME"``): a PostgreSQL login for this task only. Once; the grant is used up. Report
        the outcome when done and the login is removed (it is at ``expires_at`` anyway).
        Raises ``CountersignError`` with ``error == "provider_unavailable"`` (503) when the
        provider cannot be reached: nothing is used up, try again while the grant lives."""
        return Credential.from_json(
            _core.json_of(
                self._call("POST", f"/api/v1/grants/{_core.jti_of(grant)}/credential")
            )
        )

    def call_gateway(
        self,
        provider: str,
        grant: Grant | str,
        method: str,
        path: str,
        *,
        json: Any = None,
    ) -> httpx.Response:
        """Sends the one approved call through the gateway ``provider``, which adds the
        secret this agent never holds. ``method``, ``path`` (with its query) and ``json``
        must be exactly the approved ``action.operation`` and ``action.params``. Returns the
        upstream's answer as it came; a refusal by Countersign (a call that differs, a used
        grant) raises like any other call."""
        url_path, headers = _core.gateway_call(provider, grant, path)
        response = self._call(method, url_path, json=json, headers=headers)
        if _core.refused_by_countersign(response):
            _core.raise_for_problem(response)
        return response

    # --- for downstream systems -------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        """``GET /.well-known/jwks.json``."""
        return _core.json_of(self._call("GET", "/.well-known/jwks.json", auth=False))

    def verify_grant(
        self,
        token: str,
        *,
        expected_audience: str,
        action_hash: str | None = None,
        action: Mapping[str, Any] | None = None,
        leeway: float = 0.0,
    ) -> dict[str, Any]:
        """Verifies a grant locally and returns its claims.

        Checks the EdDSA signature with the server's JWKS (cached; fetched again when the
        token names a key it does not know), ``typ`` = ``countersign-grant+jwt``, ``exp``,
        ``iss`` (the public URL), ``aud`` = ``expected_audience`` (your system, i.e. the
        action's ``target``), and the ``action_hash``: given, or computed from ``action`` (a
        request body's ``{"action", "intent", "context"}``: what you are about to do).
        Raises :class:`~countersign.InvalidGrant` (``field`` names what is wrong) or
        :class:`~countersign.GrantExpired`. This does not use the grant up: :meth:`redeem`
        does, and only redeeming guards against a second use.
        """
        kid = _core.grant_kid(token)
        if self._jwks.needs_fetch(kid):
            self._jwks.load(self.jwks())
        return _core.verify_with(
            token,
            self._jwks.keys.get(kid),
            kid=kid,
            expected_audience=expected_audience,
            issuer=self.public_url,
            action_hash=action_hash,
            action=action,
            leeway=leeway,
        )

    def redeem(self, token: str, action_hash: str | None = None) -> dict[str, Any]:
        """Uses the grant up, just before acting; returns its claims. A second call raises
        :class:`~countersign.GrantAlreadyRedeemed`; also :class:`~countersign.GrantExpired`,
        :class:`~countersign.GrantRevoked`, or :class:`~countersign.InvalidRequest` when
        ``action_hash`` is not the grant's."""
        body: dict[str, Any] = {"token": token}
        if action_hash is not None:
            body["action_hash"] = action_hash
        answer = _core.json_of(self._call("POST", "/api/v1/grants/redeem", json=body, auth=False))
        claims: dict[str, Any] = answer.get("claims") or {}
        return claims
