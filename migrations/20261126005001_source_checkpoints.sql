-- Check windows per source: a stream belongs to a source (its root stream's identifier unless it
-- declared one), and a source's checkpoint moves forward only when a run read all of it
-- successfully, so one failing source no longer makes every later check re-read the others from
-- the start. Forward-only.
ALTER TABLE integration_streams ADD COLUMN source text;
UPDATE integration_streams SET source = chain_identifier;
ALTER TABLE integration_streams ALTER COLUMN source SET NOT NULL;

CREATE TABLE source_checkpoints (
    integration_id uuid        NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    source         text        NOT NULL,
    -- when the last run that read the whole source successfully started: a check reads from here
    -- (minus the platform's overlap)
    read_from      timestamptz NOT NULL,
    -- the run that moved it
    run_id         uuid        NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration_id, source)
);
