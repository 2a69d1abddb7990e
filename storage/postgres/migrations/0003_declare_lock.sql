-- Declare holds this table's lock exclusively while it rebuilds indexes and
-- switches definitions; every write transaction takes it shared (ACCESS
-- SHARE) as its first statement. A table lock, unlike an advisory lock
-- taken with SELECT, is taken before the transaction's snapshot, so a
-- write that waited for a Declare sees the index rows it rebuilt.
CREATE TABLE declare_lock ();
