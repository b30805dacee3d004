-- Delegation chains: an agent may be registered as a sub-agent of another agent (its parent).
-- NULL for an agent that acts directly for its owner. Suspending an agent suspends its
-- sub-agents, transitively (the service walks this column down, level by level, in the
-- suspension's transaction); policy counts the ancestors as the request's registered
-- delegation depth. Cycles and depth are refused by the service, which serialises every
-- change of this column.
ALTER TABLE agents ADD COLUMN parent_id TEXT REFERENCES agents(id);
CREATE INDEX agents_parent ON agents(parent_id) WHERE parent_id IS NOT NULL;
