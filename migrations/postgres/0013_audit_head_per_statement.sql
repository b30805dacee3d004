-- The chain head follows appended events once per statement instead of once per event (issue
-- 15): an intake batch appends up to a hundred events in one statement, and the row trigger
-- rewrote the head's one row for each of them, leaving a dead row version behind every time.
-- The head ends at the statement's last event (the highest seq), as it did before.
DROP TRIGGER audit_head_follows_events ON audit_events;
DROP FUNCTION audit_head_follow();

CREATE FUNCTION audit_head_follow() RETURNS trigger AS $$
BEGIN
    -- A statement that inserted no row changes nothing.
    UPDATE audit_head
    SET hash = (SELECT a.hash FROM appended a ORDER BY a.seq DESC LIMIT 1)
    WHERE id = 1 AND EXISTS (SELECT 1 FROM appended);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_head_follows_events AFTER INSERT ON audit_events
REFERENCING NEW TABLE AS appended
FOR EACH STATEMENT EXECUTE FUNCTION audit_head_follow();
