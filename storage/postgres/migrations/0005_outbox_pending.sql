-- From this migration on, a transaction writes its events pending, with
-- negative sequence numbers (-(g * 2^20 + i): g drawn from
-- outbox_pending_seq once per transaction, i the event's position), and
-- takes no lock; readers number the committed pending events from
-- outbox_seq, in the order of their pending numbers, under the outbox
-- advisory lock before they read. Until then an event-writing
-- transaction held that lock until its commit was on disk, so such
-- commits could not share a disk flush. A binary of an earlier version,
-- which would write numbered events beside pending ones out of order,
-- refuses the schema once this migration is counted.
CREATE SEQUENCE outbox_pending_seq;

-- Every role that may write events may draw from it (the engines' roles
-- under row-level security were granted the sequences that existed when
-- they were set up); it orders pending events and holds nothing else.
GRANT USAGE ON SEQUENCE outbox_pending_seq TO PUBLIC;
