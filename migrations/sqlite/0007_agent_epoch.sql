-- The kill switch, by construction. An agent's epoch advances with every change of its status
-- or credential (suspend, resume, a rotated API key, a new public key), in the statement that
-- makes the change. Whatever was authorised under an earlier epoch compares it inside its own
-- writing transaction and does not commit: a request still on its way to the intake writer, a
-- grant minted by a decision, a redemption (grants remember the epoch they were issued under).
ALTER TABLE agents ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE grants ADD COLUMN agent_epoch INTEGER NOT NULL DEFAULT 0;
