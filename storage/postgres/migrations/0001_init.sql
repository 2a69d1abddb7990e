-- Format 1 of a Rapport store. Every user-supplied string (tenant, record
-- ID, index value, event type) is bytea: PostgreSQL text refuses NUL bytes
-- and invalid UTF-8 and sorts by collation, while the storage contract
-- orders keys byte by byte. Bodies are bytea too: jsonb would reorder keys,
-- keep the last of duplicate keys and refuse \u0000, so a record would not
-- come back as it was written.
CREATE TABLE meta (
    key   text PRIMARY KEY,
    value bytea NOT NULL
);

CREATE TABLE records (
    tenant  bytea  NOT NULL,
    coll    text   NOT NULL,
    id      bytea  NOT NULL,
    version bigint NOT NULL,
    body    bytea  NOT NULL,
    PRIMARY KEY (tenant, coll, id)
);

-- One row per (record, index, value): the order of scans by index.
CREATE TABLE entries (
    tenant bytea NOT NULL,
    coll   text  NOT NULL,
    idx    text  NOT NULL,
    value  bytea NOT NULL,
    id     bytea NOT NULL,
    PRIMARY KEY (tenant, coll, idx, value, id)
);

-- Values of unique indexes: the primary key makes the database refuse a
-- second holder, whatever process writes it.
CREATE TABLE uniques (
    tenant bytea NOT NULL,
    coll   text  NOT NULL,
    idx    text  NOT NULL,
    value  bytea NOT NULL,
    id     bytea NOT NULL,
    PRIMARY KEY (tenant, coll, idx, value)
);

-- Sequence numbers are drawn under an advisory lock held until commit, so
-- they are committed in increasing order.
CREATE SEQUENCE outbox_seq;

CREATE TABLE outbox (
    seq       bigint PRIMARY KEY,
    tenant    bytea  NOT NULL,
    type      bytea  NOT NULL,
    coll      bytea  NOT NULL,
    record_id bytea  NOT NULL,
    time      text   NOT NULL, -- RFC 3339 with nanoseconds and the offset, as written
    body      bytea
);
CREATE INDEX outbox_record ON outbox (tenant, coll, record_id);

CREATE TABLE consumers (
    name  bytea  PRIMARY KEY,
    acked bigint NOT NULL
);
