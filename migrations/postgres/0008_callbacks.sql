-- Signed callbacks (CIBA ping mode). An agent may have one callback URL; when one of its
-- requests leaves `pending`, the statement that moves it also writes a delivery row here, in the
-- same transaction (an outbox: a crash never loses a callback, and no callback is sent for a
-- change that rolled back). A request leaves `pending` once, so its id is the delivery's key.
ALTER TABLE agents ADD COLUMN callback_url TEXT;

CREATE TABLE callback_deliveries (
    request_id       TEXT PRIMARY KEY REFERENCES requests(id),
    agent_id         TEXT NOT NULL,
    -- The URL registered when the request was decided, as evidence. Each attempt goes to the
    -- URL registered at that moment; once it is cleared, the callback is given up.
    url              TEXT NOT NULL,
    -- The request's final status, as announced.
    status           TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    -- A worker that claimed the row owns it until then; a worker that died lets it go.
    lease_until      BIGINT,
    finished_at      BIGINT,
    last_error       TEXT
);
CREATE INDEX callback_deliveries_due ON callback_deliveries (next_attempt_at)
    WHERE state = 'pending';
