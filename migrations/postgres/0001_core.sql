-- Countersign core schema (PostgreSQL). Times are unix milliseconds (BIGINT); ids are text UUIDs;
-- structured values are canonical JSON text. The SQLite twin lives in migrations/sqlite.

CREATE TABLE users (
    id               TEXT PRIMARY KEY,
    email            TEXT NOT NULL UNIQUE,
    display_name     TEXT NOT NULL,
    role             TEXT NOT NULL CHECK (role IN ('owner', 'admin')),
    status           TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deactivated')),
    created_at       BIGINT NOT NULL,
    last_sign_in_at  BIGINT
);

CREATE TABLE user_groups (
    user_id     TEXT NOT NULL REFERENCES users(id),
    group_name  TEXT NOT NULL,
    PRIMARY KEY (user_id, group_name)
);

CREATE TABLE passkeys (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users(id),
    credential_id  TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    passkey        TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT
);
CREATE INDEX passkeys_user ON passkeys(user_id);

CREATE TABLE enrolments (
    token_hash  TEXT PRIMARY KEY,
    email       TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('owner', 'admin')),
    groups      TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);

CREATE TABLE ceremonies (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    user_id          TEXT,
    session_binding  TEXT,
    request_id       TEXT,
    action_hash      TEXT,
    state            TEXT NOT NULL,
    context          TEXT NOT NULL,
    expires_at       BIGINT NOT NULL
);
CREATE INDEX ceremonies_expiry ON ceremonies(expires_at);

CREATE TABLE agents (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    owner_id        TEXT NOT NULL REFERENCES users(id),
    status          TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    key_type        TEXT NOT NULL CHECK (key_type IN ('api_key', 'public_key')),
    api_key_hash    TEXT,
    public_jwk      TEXT,
    jwk_thumbprint  TEXT,
    created_at      BIGINT NOT NULL,
    last_seen_at    BIGINT
);
CREATE INDEX agents_owner ON agents(owner_id);

CREATE TABLE assertion_jtis (
    agent_id    TEXT NOT NULL,
    jti         TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (agent_id, jti)
);
CREATE INDEX assertion_jtis_expiry ON assertion_jtis(expires_at);

CREATE TABLE policy_versions (
    version     BIGINT PRIMARY KEY,
    hash        TEXT NOT NULL,
    source      TEXT NOT NULL,
    applied_by  TEXT NOT NULL,
    applied_at  BIGINT NOT NULL
);

CREATE TABLE requests (
    id                  TEXT PRIMARY KEY,
    agent_id            TEXT NOT NULL REFERENCES agents(id),
    status              TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired', 'cancelled')),
    action_hash         TEXT NOT NULL,
    body                TEXT NOT NULL,
    action_type         TEXT NOT NULL,
    target              TEXT NOT NULL,
    policy_version      BIGINT NOT NULL,
    policy_hash         TEXT NOT NULL,
    rule_id             TEXT NOT NULL,
    explanation         TEXT NOT NULL,
    approvals_required  BIGINT NOT NULL,
    approver_rule       TEXT NOT NULL,
    grant_ttl_seconds   BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL,
    decided_at          BIGINT,
    decided_by          TEXT,
    reason_code         TEXT,
    reason              TEXT
);
CREATE INDEX requests_pending ON requests(status, expires_at);
CREATE INDEX requests_agent ON requests(agent_id, created_at);

CREATE TABLE idempotency_keys (
    agent_id    TEXT NOT NULL,
    key         TEXT NOT NULL,
    body_hash   TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (agent_id, key)
);

CREATE TABLE approvals (
    request_id  TEXT NOT NULL REFERENCES requests(id),
    user_id     TEXT NOT NULL REFERENCES users(id),
    passkey_id  TEXT NOT NULL,
    decided_at  BIGINT NOT NULL,
    PRIMARY KEY (request_id, user_id)
);

CREATE TABLE grants (
    jti           TEXT PRIMARY KEY,
    request_id    TEXT NOT NULL UNIQUE REFERENCES requests(id),
    agent_id      TEXT NOT NULL REFERENCES agents(id),
    status        TEXT NOT NULL CHECK (status IN ('issued', 'redeemed', 'expired', 'revoked')),
    claims        TEXT NOT NULL,
    issued_at     BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    redeemed_at   BIGINT,
    revoked_at    BIGINT,
    outcome       TEXT,
    reported_at   BIGINT
);
CREATE INDEX grants_agent_status ON grants(agent_id, status);
CREATE INDEX grants_status_expiry ON grants(status, expires_at);

CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    public_jwk  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE audit_head (
    id    BIGINT PRIMARY KEY CHECK (id = 1),
    seq   BIGINT NOT NULL,
    hash  TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, 'sha256:0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE audit_events (
    seq         BIGINT PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    request_id  TEXT,
    data        TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX audit_events_request ON audit_events(request_id);

CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    data         TEXT NOT NULL,
    expiry_date  BIGINT NOT NULL
);
CREATE INDEX sessions_expiry ON sessions(expiry_date);
