-- Guards against approval fatigue (see server/src/domain/guards.rs).

-- Admin-set values; a key missing here has its default.
CREATE TABLE settings (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- Mails sent to approvers, for the prompts-per-minute limit.
CREATE TABLE prompts (
    user_id     TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    at          BIGINT NOT NULL,
    PRIMARY KEY (user_id, request_id)
);
CREATE INDEX prompts_recent ON prompts(user_id, at);

-- When each person first opened each request's page, for the approve delay.
CREATE TABLE page_views (
    request_id  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    first_at    BIGINT NOT NULL,
    PRIMARY KEY (request_id, user_id)
);

-- Finding an identical pending request of the same agent (collapsing).
CREATE INDEX requests_pending_same ON requests(agent_id, action_hash) WHERE status = 'pending';
-- Finding an agent's recent denials (the cooldown).
CREATE INDEX requests_denied_by_agent ON requests(agent_id, decided_at) WHERE status = 'denied';
