-- PairDB metadata, version 4: client bearer tokens.
-- One row per token: everything but the secret, kept only as its SHA-256 (hex). `tenant_id` is
-- empty for an admin token; `revoked_at_us` is 0 while the token is valid. Revocation is an
-- UPDATE, never a DELETE, so listings show when a token stopped working.
CREATE TABLE tokens (
    token_id      TEXT COLLATE "C" PRIMARY KEY,
    tenant_id     TEXT   NOT NULL,
    role          TEXT   NOT NULL,
    created_at_us BIGINT NOT NULL,
    revoked_at_us BIGINT NOT NULL DEFAULT 0,
    secret_hash   TEXT   NOT NULL
);
