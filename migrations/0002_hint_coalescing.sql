-- PairDB metadata, version 2: at most one hint per (target node, tenant, key), and a running
-- count of all hints so that the coordinator can cap the table (hint_max_stored) without
-- counting it on every batch.

-- Version 1 stored one row per missed write. Collapse each key's rows to the one created last
-- (the highest id on a tie); the coordinator coalesces by version from now on.
DELETE FROM hints
WHERE id IN (
    SELECT id FROM (
        SELECT id, row_number() OVER (
                   PARTITION BY target_node, tenant_id, key
                   ORDER BY created_at_us DESC, id DESC
               ) AS rank
        FROM hints
    ) ranked
    WHERE rank > 1
);

-- On md5(key) rather than key: a btree entry must stay under ~2.7 kB and keys may be up to
-- 16 kB (max_key_bytes). Lookups compare the key itself too; two different keys with the same
-- md5 (only ever made on purpose) cannot both have a hint, and the second one's is dropped.
CREATE UNIQUE INDEX hints_one_per_key ON hints (target_node, tenant_id, md5(key));

-- One row. Every hint write locks it first (SELECT ... FOR UPDATE), which serializes hint writes
-- of all coordinators sharing the database: the cap is exact, and two coordinators never insert
-- the same key at once. drop_older_than recounts it, so a manual DELETE heals within a sweep.
CREATE TABLE hint_total (
    only_row BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    n        BIGINT  NOT NULL
);
INSERT INTO hint_total (n) SELECT count(*) FROM hints;
