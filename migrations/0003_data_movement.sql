-- PairDB metadata, version 3: data movement.
-- A migration's driver state (plan inputs, stage, checkpoints) as JSON, and an operator's cancel
-- request, kept in a column of its own that checkpoints never overwrite.
ALTER TABLE migrations ADD COLUMN state TEXT NOT NULL DEFAULT '';
ALTER TABLE migrations ADD COLUMN cancel_requested BOOLEAN NOT NULL DEFAULT false;

-- Each coordinator's last beat: the migration stage every one of its cores applied. A stage
-- advances only once every live coordinator reports the previous one.
CREATE TABLE coordinator_beats (
    coordinator_id TEXT COLLATE "C" PRIMARY KEY,
    at_ms          BIGINT NOT NULL,
    migration_id   TEXT   NOT NULL,
    stage          TEXT   NOT NULL
);
