"""The ``action_hash``: what every approval, grant and redemption binds to.

The server hashes ``{agent_id, action, intent, context}`` as RFC 8785 canonical JSON with
SHA-256 and writes it ``sha256:<hex>`` (``server/src/domain/intake/types.rs``,
``NewRequest::hashed_view``). Absent and ``null`` optional fields are left out, ``intent`` and
``context`` are always present (``{}`` when empty), an empty ``delegation`` is left out, and
``expires_in`` is not part of it. :func:`action_hash` builds that same object from what an
agent sent, so a downstream system can check a grant against the action it is about to
perform without trusting anyone's word for the hash.

Canonicalisation is the ``rfc8785`` package's, not ours.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

import rfc8785

__all__ = ["action_hash", "canonical_json", "hashed_view", "sha256_prefixed"]


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 canonical form of a JSON value."""
    return rfc8785.dumps(value)


def sha256_prefixed(data: bytes) -> str:
    """``sha256:<lowercase hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _without_nulls(obj: Mapping[str, Any] | None, keys: tuple[str, ...]) -> dict[str, Any]:
    """The listed keys of ``obj`` that are present and not ``None``, in that order."""
    if not obj:
        return {}
    return {k: obj[k] for k in keys if obj.get(k) is not None}


def hashed_view(
    agent_id: str,
    action: Mapping[str, Any],
    intent: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The object the server hashes, built from a request body's parts."""
    view_action = _without_nulls(action, ("type", "target", "operation", "params"))
    view_intent = _without_nulls(intent, ("goal", "rationale"))
    view_context = _without_nulls(
        context, ("environment", "data_sensitivity", "amount", "task_id", "delegation")
    )
    if "amount" in view_context:
        amount = view_context["amount"]
        view_context["amount"] = {"value": amount["value"], "currency": amount["currency"]}
    if "delegation" in view_context:
        entries = [
            _without_nulls(entry, ("actor", "on_behalf_of")) for entry in view_context["delegation"]
        ]
        if entries:
            view_context["delegation"] = entries
        else:
            del view_context["delegation"]
    return {
        "agent_id": agent_id,
        "action": view_action,
        "intent": view_intent,
        "context": view_context,
    }


def action_hash(
    agent_id: str,
    action: Mapping[str, Any],
    intent: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
) -> str:
    """``sha256:<hex>`` of the canonical ``{agent_id, action, intent, context}``.

    ``action`` is the request's ``action`` object (``type``, ``target``, and optionally
    ``operation`` and ``params``); ``intent`` and ``context`` as sent. The result equals the
    ``action_hash`` the server returned for that request and put in its grant.
    """
    return sha256_prefixed(canonical_json(hashed_view(agent_id, action, intent, context)))
