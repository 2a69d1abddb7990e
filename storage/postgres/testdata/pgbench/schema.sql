-- Tables of a store (migrations 1-5, reduced to what a create touches),
-- in schema pgb, for the pgbench scripts beside this file. Run:
--   psql "$URL" -f schema.sql
--   pgbench -n -M prepared -c 1 -T 8 -f insert.sql "$URL"   (and the others)
-- with fsync and synchronous_commit on, as the Go benchmarks.
DROP SCHEMA IF EXISTS pgb CASCADE;
CREATE SCHEMA pgb;
SET search_path = pgb;
CREATE TABLE raw (id bytea PRIMARY KEY, body bytea NOT NULL);
CREATE TABLE records (tenant bytea NOT NULL, coll text NOT NULL, id bytea NOT NULL, version bigint NOT NULL, body bytea NOT NULL, PRIMARY KEY (tenant, coll, id));
CREATE TABLE entries (tenant bytea NOT NULL, coll text NOT NULL, idx text NOT NULL, value bytea NOT NULL, id bytea NOT NULL, PRIMARY KEY (tenant, coll, idx, value, id));
CREATE TABLE uniques (tenant bytea NOT NULL, coll text NOT NULL, idx text NOT NULL, value bytea NOT NULL, id bytea NOT NULL, PRIMARY KEY (tenant, coll, idx, value));
CREATE SEQUENCE outbox_pending_seq;
CREATE TABLE outbox (seq bigint PRIMARY KEY, tenant bytea NOT NULL, type bytea NOT NULL, coll bytea NOT NULL, record_id bytea NOT NULL, time text NOT NULL, body bytea);
CREATE INDEX outbox_record ON outbox (tenant, coll, record_id);
CREATE TABLE declare_lock ();
CREATE FUNCTION rapport_expect(ok boolean, what text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT ok THEN
        RAISE EXCEPTION USING ERRCODE = 'RX001', MESSAGE = what;
    END IF;
END
$$;
-- The record whose version a create checks (the tenant's contact schema).
INSERT INTO records VALUES ('t', 'schemas', 'contact', 3, 'x');
