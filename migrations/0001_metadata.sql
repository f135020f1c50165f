-- PairDB metadata, version 1: tenants, storage nodes, migrations and hints.
-- Applied once per database (schema) by the coordinator at start-up, under an advisory lock, and
-- recorded in schema_migrations. Ids are COLLATE "C" so that listings sort bytewise, as the
-- embedded store does.

CREATE TABLE tenants (
    tenant_id          TEXT COLLATE "C" PRIMARY KEY,
    replication_factor INTEGER NOT NULL CHECK (replication_factor > 0),
    created_at         BIGINT  NOT NULL,
    updated_at         BIGINT  NOT NULL
);

CREATE TABLE storage_nodes (
    node_id       TEXT COLLATE "C" PRIMARY KEY,
    host          TEXT    NOT NULL,
    port          INTEGER NOT NULL CHECK (port BETWEEN 0 AND 65535),
    virtual_nodes INTEGER NOT NULL,
    state         TEXT    NOT NULL,
    added_at      BIGINT  NOT NULL
);

CREATE TABLE migrations (
    migration_id   TEXT COLLATE "C" PRIMARY KEY,
    migration_type TEXT   NOT NULL,
    node_id        TEXT   NOT NULL,
    status         TEXT   NOT NULL,
    keys_migrated  BIGINT NOT NULL,
    total_keys     BIGINT NOT NULL,
    started_at     BIGINT NOT NULL,
    completed_at   BIGINT NOT NULL,
    error_message  TEXT   NOT NULL
);

-- One row per hint; the id (a sequence) orders a node's hints oldest first. The version is the
-- wire's storage.Version message (prost bytes), as in the embedded store.
CREATE TABLE hints (
    id            BIGSERIAL PRIMARY KEY,
    target_node   TEXT COLLATE "C" NOT NULL,
    tenant_id     TEXT   NOT NULL,
    key           TEXT   NOT NULL,
    version       BYTEA  NOT NULL,
    created_at_us BIGINT NOT NULL
);
CREATE INDEX hints_by_node ON hints (target_node, id);
CREATE INDEX hints_by_time ON hints (created_at_us);
