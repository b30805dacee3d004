#!/usr/bin/env python3
"""A real SMTP server for Countersign's mail tests: aiosmtpd, on loopback.

Every message it accepts is written to OUT_DIR as one JSON file (written to a
temporary name, then renamed, so a reader never sees half a file) holding the
envelope, the decoded headers and plain-text body (Python's email package
undoes lettre's quoted-printable or base64), the raw message as received, and
the user name the client authenticated as, if any.

Usage: sink.py --port PORT --out OUT_DIR [--auth USER:PASSWORD]

With --auth, AUTH (PLAIN or LOGIN) is required before MAIL FROM, and allowed
without TLS: this server only ever listens on 127.0.0.1. Prints "ready PORT"
once it accepts connections and runs until it is killed.
"""

import argparse
import email
import email.policy
import json
import logging
import os
import signal
import sys
import uuid
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class JsonSink:
    def __init__(self, out_dir):
        self.out_dir = out_dir

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        plain = msg.get_body(preferencelist=("plain",))
        login = None
        if isinstance(session.auth_data, LoginPassword):
            login = session.auth_data.login.decode("utf-8", "replace")
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(msg["from"] or ""),
            "to": str(msg["to"] or ""),
            "subject": str(msg["subject"] or ""),
            "headers": [[k, str(v)] for k, v in msg.items()],
            "body": plain.get_content().replace("\r\n", "\n") if plain is not None else "",
            "raw": raw.decode("utf-8", "replace"),
            "auth_login": login,
        }
        name = uuid.uuid4().hex
        tmp = os.path.join(self.out_dir, "." + name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(self.out_dir, name + ".json"))
        return "250 OK"


def password_check(user, password):
    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        # auth_data is what the session remembers as the authenticated identity.
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return authenticator


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--auth", help="USER:PASSWORD; AUTH is then required")
    args = parser.parse_args()

    # AUTH without TLS is deliberate here (loopback only); aiosmtpd warns about it on stderr.
    warnings.filterwarnings("ignore", category=UserWarning, module="aiosmtpd")
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    os.makedirs(args.out, exist_ok=True)
    params = {}
    if args.auth:
        user, _, password = args.auth.partition(":")
        params = {
            "auth_required": True,
            "auth_require_tls": False,
            "authenticator": password_check(user, password),
        }
    controller = Controller(JsonSink(args.out), hostname="127.0.0.1", port=args.port, **params)
    controller.start()
    print("ready", args.port, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            signal.pause()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
