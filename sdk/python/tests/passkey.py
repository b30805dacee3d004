"""A software passkey (WebAuthn authenticator plus the browser's part) for the tests.

PyPI's ``soft-webauthn`` was the obvious choice, but it never sets the user-verified flag, and
Countersign requires user verification for every ceremony, so it cannot enrol or approve. This
is the same idea, small: an ES256 key per credential, ``none`` attestation, and the client
data a browser would write. CBOR and COSE key encoding are ``fido2``'s; signatures are
``cryptography``'s. It reads the ``publicKey`` options webauthn-rs sends (base64url strings)
and answers in the JSON shape webauthn-rs reads (``RegisterPublicKeyCredential`` and
``PublicKeyCredential``), like the Rust tests' ``SoftPasskey``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2 import cbor
from fido2.cose import ES256

# Authenticator data flags (WebAuthn §6.1): user present, user verified, attested data.
UP, UV, AT = 0x01, 0x04, 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SoftPasskey:
    """One authenticator holding one credential, for one origin."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.user_handle: bytes | None = None
        self.rp_id: str | None = None
        self.sign_count = 0

    def _client_data(self, kind: str, challenge: str) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": False}
        ).encode()

    def register(self, options: dict[str, Any]) -> dict[str, Any]:
        """``navigator.credentials.create`` for webauthn-rs's creation options."""
        pk = options["publicKey"]
        if not any(p.get("alg") == -7 for p in pk["pubKeyCredParams"]):
            raise ValueError("the server does not accept ES256 keys")
        self.rp_id = pk["rp"]["id"]
        self.user_handle = unb64url(pk["user"]["id"])
        cose_key = cbor.encode(ES256.from_cryptography_key(self.key.public_key()))
        auth_data = (
            hashlib.sha256(self.rp_id.encode()).digest()
            + bytes([UP | UV | AT])
            + struct.pack(">I", self.sign_count)
            + b"\x00" * 16  # AAGUID
            + struct.pack(">H", len(self.credential_id))
            + self.credential_id
            + cose_key
        )
        attestation = cbor.encode({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "attestationObject": b64url(attestation),
                "clientDataJSON": b64url(self._client_data("webauthn.create", pk["challenge"])),
            },
            "extensions": {},
        }

    def authenticate(self, options: dict[str, Any]) -> dict[str, Any]:
        """``navigator.credentials.get`` for webauthn-rs's request options."""
        pk = options["publicKey"]
        if pk.get("rpId", self.rp_id) != self.rp_id:
            raise ValueError(f"this passkey is for {self.rp_id}, not {pk.get('rpId')}")
        allowed = [c["id"] for c in pk.get("allowCredentials") or []]
        if allowed and b64url(self.credential_id) not in allowed:
            raise ValueError("this passkey is not among the allowed credentials")
        self.sign_count += 1
        assert self.rp_id is not None
        auth_data = (
            hashlib.sha256(self.rp_id.encode()).digest()
            + bytes([UP | UV])
            + struct.pack(">I", self.sign_count)
        )
        client_data = self._client_data("webauthn.get", pk["challenge"])
        signature = self.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        assert self.user_handle is not None
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "authenticatorData": b64url(auth_data),
                "clientDataJSON": b64url(client_data),
                "signature": b64url(signature),
                "userHandle": b64url(self.user_handle),
            },
            "extensions": {},
        }
