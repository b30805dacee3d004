-- The chain head follows each appended event, inside the appending statement, so an append is
-- two statements (advance seq, insert event) instead of three. Verification never trusts the
-- head: it recomputes every hash.
CREATE TRIGGER audit_head_follows_events AFTER INSERT ON audit_events
BEGIN
    UPDATE audit_head SET hash = NEW.hash WHERE id = 1;
END;
