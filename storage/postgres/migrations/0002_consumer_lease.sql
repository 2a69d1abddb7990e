-- A consumer is read by one process at a time: the one holding its lease.
-- Another process takes over when the lease runs out (its holder died) or
-- is released (its holder closed the store).
ALTER TABLE consumers ADD COLUMN owner bytea, ADD COLUMN lease_until timestamptz;
