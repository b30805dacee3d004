-- Task-scoped credentials. An admin configures credential providers; a policy rule names one
-- (`credential = "orders-db"`), and a request it decides carries the provider's name, so the
-- approver sees what will be released and the grant can be redeemed for it.
ALTER TABLE requests ADD COLUMN credential TEXT;
ALTER TABLE requests ADD COLUMN credential_ttl_seconds BIGINT;

-- The provider's secret (an admin DSN, an API token) is stored sealed: AES-256-GCM under the
-- credential key in the data directory, with the provider's name as associated data. The
-- fingerprint (an HMAC of the secret under a key derived from the same key) lets the audit chain
-- and the admins say which secret was in force without revealing it.
CREATE TABLE credential_providers (
    name               TEXT PRIMARY KEY,
    kind               TEXT NOT NULL CHECK (kind IN ('postgres', 'http')),
    -- The settings that are not secret (template role, limits, upstream URL, operations), JSON.
    settings           TEXT NOT NULL,
    sealed_secret      TEXT NOT NULL,
    secret_fingerprint TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    created_by         TEXT NOT NULL
);

-- One credential released for one grant. The row is written in the transaction that redeems
-- the grant, before the downstream role is committed, so no role can exist that this table does
-- not know; revocation then runs step by step (`revoke_step` counts the steps done), each
-- step its own downstream transaction, retried until done.
CREATE TABLE credential_leases (
    id               TEXT PRIMARY KEY,
    jti              TEXT NOT NULL UNIQUE REFERENCES grants(jti),
    request_id       TEXT NOT NULL REFERENCES requests(id),
    agent_id         TEXT NOT NULL,
    provider         TEXT NOT NULL,
    -- The downstream login's name (`cs_<id>`).
    login            TEXT NOT NULL UNIQUE,
    state            TEXT NOT NULL CHECK (state IN ('active', 'revoking', 'revoked')),
    issued_at        BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    revoke_reason    TEXT,
    revoke_requested_at BIGINT,
    revoke_step      BIGINT NOT NULL DEFAULT 0,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT,
    lease_until      BIGINT,
    revoked_at       BIGINT,
    last_error       TEXT
);
CREATE INDEX credential_leases_live ON credential_leases (expires_at) WHERE state = 'active';
CREATE INDEX credential_leases_revoking ON credential_leases (next_attempt_at)
    WHERE state = 'revoking';
CREATE INDEX credential_leases_by_agent ON credential_leases (agent_id) WHERE state = 'active';
