-- Counting an agent's pending requests (the cap on pending requests per agent) reads only
-- pending rows.
CREATE INDEX requests_pending_by_agent ON requests(agent_id, expires_at) WHERE status = 'pending';
