-- "Has this agent asked for this action type before?" (a risk shown on the inbox and the
-- request page): one index probe, however long the agent's history.
CREATE INDEX requests_agent_action ON requests(agent_id, action_type, created_at);
