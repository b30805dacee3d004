-- The chain head follows each appended event, inside the appending statement, so an append is
-- two statements (advance seq, insert event) instead of three. Verification never trusts the
-- head: it recomputes every hash.
CREATE FUNCTION audit_head_follow() RETURNS trigger AS $$
BEGIN
    UPDATE audit_head SET hash = NEW.hash WHERE id = 1;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_head_follows_events AFTER INSERT ON audit_events
FOR EACH ROW EXECUTE FUNCTION audit_head_follow();
