-- Finding an identical pending request of the same agent (collapsing), oldest first, from the
-- index alone: with created_at in it, the lookup is one probe and needs no sort (see
-- store::guards::INTAKE_LOAD_SQL).
DROP INDEX requests_pending_same;
CREATE INDEX requests_pending_same ON requests(agent_id, action_hash, created_at) WHERE status = 'pending';
