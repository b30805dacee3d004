-- Fewer index pages written per request (issue 15). An index that leads with the agent puts
-- each new request on a page of its own agent's, so a batch of requests from n agents rewrites
-- n pages per such index at every commit: with four of them, most of what intake wrote.
--
-- The agent's pending requests are counted (the pending cap), found again (collapsing
-- identical requests) and listed through one index, not two: requests_pending_same leads with
-- the agent too. When the earliest of them expires is read only when a request is refused.
DROP INDEX requests_pending_by_agent;

-- "Has this agent asked for this action type before?" is answered from the first time each
-- agent asked for each type, kept apart: a request of a type its agent has asked for before
-- (nearly every one) only reads this table's page.
CREATE TABLE agent_actions (
    agent_id     TEXT NOT NULL REFERENCES agents(id),
    action_type  TEXT NOT NULL,
    first_at     INTEGER NOT NULL,
    PRIMARY KEY (agent_id, action_type)
) WITHOUT ROWID;
INSERT INTO agent_actions (agent_id, action_type, first_at)
SELECT agent_id, action_type, MIN(created_at) FROM requests GROUP BY agent_id, action_type;
DROP INDEX requests_agent_action;
