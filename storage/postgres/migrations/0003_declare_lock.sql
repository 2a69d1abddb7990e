-- Declare holds this table's lock exclusively while it rebuilds indexes and
-- switches definitions; every write transaction takes it shared (ACCESS
-- SHARE) as its first statement. A table lock, unlike an advisory lock
-- taken with SELECT, is taken before the transaction's snapshot, so a
-- write that waited for a Declare sees the index rows it rebuilt.
CREATE TABLE declare_lock ();

-- The table holds nothing; every role that may use the schema may lock it
-- (ACCESS SHARE needs SELECT, ACCESS EXCLUSIVE needs UPDATE), as any role
-- could take the advisory lock it replaces. Engines running as a role of
-- their own (row-level security) need no new grant after this migration.
GRANT SELECT, UPDATE ON declare_lock TO PUBLIC;
