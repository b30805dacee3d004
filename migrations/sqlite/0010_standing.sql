-- Approvals that fit how people work: narrowed approvals and bounded standing approvals.

-- The narrower terms (JSON) an approver approved on, when they narrowed: the grant gets the
-- tightest terms of all the request's approvals.
ALTER TABLE approvals ADD COLUMN terms TEXT;

-- A standing approval: one person's passkey ceremony approving a bounded pattern of later
-- requests of one agent. A later request inside the pattern is approved by using one of its
-- uses, a conditional write on this row (`uses_left > 0 AND status = 'active' AND
-- expires_at > now`), in the transaction that stores the request: racing uses of the last
-- use have one winner, and a revocation (status 'revoked') is final once it commits.
CREATE TABLE standing_approvals (
    id           TEXT PRIMARY KEY,
    agent_id     TEXT NOT NULL REFERENCES agents(id),
    created_by   TEXT NOT NULL REFERENCES users(id),
    -- The request whose approval created it, and that approval's passkey ceremony.
    request_id   TEXT NOT NULL REFERENCES requests(id),
    ceremony_id  TEXT NOT NULL,
    rule_id      TEXT NOT NULL,
    action_type  TEXT NOT NULL,
    target       TEXT NOT NULL,
    -- What it covers (JSON): operation, pinned parameters, amount cap.
    pattern      TEXT NOT NULL,
    uses_total   INTEGER NOT NULL,
    uses_left    INTEGER NOT NULL CHECK (uses_left >= 0),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    status       TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    ended_at     INTEGER,
    ended_by     TEXT,
    end_reason   TEXT
);
CREATE INDEX standing_approvals_live ON standing_approvals (agent_id, action_type, target)
    WHERE status = 'active';
