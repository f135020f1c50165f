-- PairDB metadata, version 5: per-tenant limits.
-- 0 means the coordinator's default (its `limits:` configuration), so existing tenants keep
-- today's behaviour. Rates are per second and per coordinator; sizes in bytes.
ALTER TABLE tenants
    ADD COLUMN requests_per_second BIGINT NOT NULL DEFAULT 0 CHECK (requests_per_second >= 0),
    ADD COLUMN bytes_per_second    BIGINT NOT NULL DEFAULT 0 CHECK (bytes_per_second >= 0),
    ADD COLUMN max_key_bytes       BIGINT NOT NULL DEFAULT 0 CHECK (max_key_bytes >= 0),
    ADD COLUMN max_value_bytes     BIGINT NOT NULL DEFAULT 0 CHECK (max_value_bytes >= 0);
