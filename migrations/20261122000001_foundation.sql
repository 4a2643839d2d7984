-- Tributary foundation schema: integrations, their runs and streams, what they produce,
-- and the counters behind global limits. Forward-only.

CREATE TABLE integrations (
    id                uuid PRIMARY KEY,
    tenant_id         uuid        NOT NULL,
    platform          text        NOT NULL,
    status            text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'in-progress', 'done', 'error', 'disconnected')),
    -- validated by the integration's `validate_settings`; never holds secrets
    settings          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- tokens and keys; never logged, never copied into runs or streams
    credentials       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    last_processed_at timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
-- the tick fan-out: connected integrations of a platform
CREATE INDEX integrations_platform_status ON integrations (platform, status);

CREATE TABLE integration_runs (
    id               uuid PRIMARY KEY,
    integration_id   uuid        NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    onboarding       boolean     NOT NULL,
    state            text        NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'processing', 'delayed', 'processed', 'error', 'cancelled')),
    -- what started the run (a message id, a tick slot): a duplicate trigger finds the same run
    trigger_key      text,
    delayed_until    timestamptz,
    delay_reason     text,
    -- fencing token: incremented by every claim; every write of a worker names it
    attempt          bigint      NOT NULL DEFAULT 0,
    lease_owner      text,
    lease_expires_at timestamptz,
    -- failures of the run-level hooks (preprocess, get_streams, postprocess)
    retries          integer     NOT NULL DEFAULT 0,
    preprocessed     boolean     NOT NULL DEFAULT false,
    pipeline_data    jsonb       NOT NULL DEFAULT 'null'::jsonb,
    error            jsonb,
    -- final figures, written when the run ends (live figures are summed from its streams)
    streams_processed  bigint    NOT NULL DEFAULT 0,
    streams_errored    bigint    NOT NULL DEFAULT 0,
    members_created    bigint    NOT NULL DEFAULT 0,
    activities_created bigint    NOT NULL DEFAULT 0,
    activities_updated bigint    NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((state = 'delayed') = (delayed_until IS NOT NULL)),
    CHECK ((state = 'processing') = (lease_expires_at IS NOT NULL))
);
-- at most one active run per integration
CREATE UNIQUE INDEX integration_runs_one_active ON integration_runs (integration_id)
    WHERE state IN ('pending', 'processing', 'delayed');
-- a trigger (message, tick slot) makes one run of an integration, however often it is delivered
CREATE UNIQUE INDEX integration_runs_trigger ON integration_runs (integration_id, trigger_key)
    WHERE trigger_key IS NOT NULL;
CREATE INDEX integration_runs_integration ON integration_runs (integration_id, created_at DESC);
-- the scheduler: delayed runs whose time has come, leases that expired
CREATE INDEX integration_runs_delayed ON integration_runs (delayed_until) WHERE state = 'delayed';
CREATE INDEX integration_runs_leases ON integration_runs (lease_expires_at) WHERE state = 'processing';

CREATE TABLE integration_streams (
    id                    uuid PRIMARY KEY,
    -- claim order within a run
    seq                   bigint GENERATED ALWAYS AS IDENTITY,
    run_id                uuid        NOT NULL REFERENCES integration_runs (id) ON DELETE CASCADE,
    parent_id             uuid        REFERENCES integration_streams (id) ON DELETE CASCADE,
    identifier            text        NOT NULL,
    -- the identifier of the first page of this stream's pagination chain
    chain_identifier      text        NOT NULL,
    data                  jsonb       NOT NULL DEFAULT 'null'::jsonb,
    -- the page this stream fetches (null: the first page) and its position in the chain
    page                  jsonb,
    page_number           integer     NOT NULL DEFAULT 1 CHECK (page_number >= 1),
    state                 text        NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'processing', 'processed', 'error')),
    retries               integer     NOT NULL DEFAULT 0,
    -- a pending stream waiting out a retry backoff
    delayed_until         timestamptz,
    -- the run attempt that holds this stream while it is processing
    claimed_attempt       bigint,
    error                 jsonb,
    records               integer     NOT NULL DEFAULT 0,
    members_created       integer     NOT NULL DEFAULT 0,
    activities_created    integer     NOT NULL DEFAULT 0,
    activities_updated    integer     NOT NULL DEFAULT 0,
    last_record           jsonb,
    last_record_timestamp timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    started_at            timestamptz,
    finished_at           timestamptz,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (run_id, identifier),
    CHECK ((state = 'processing') = (claimed_attempt IS NOT NULL))
);
-- claiming the next due streams of a run, in order
CREATE INDEX integration_streams_due ON integration_streams (run_id, seq)
    WHERE state = 'pending';
-- progress and final counts
CREATE INDEX integration_streams_run_state ON integration_streams (run_id, state);
CREATE INDEX integration_streams_parent ON integration_streams (parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE members (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id      uuid        NOT NULL,
    platform       text        NOT NULL,
    -- the platform's stable id of the member
    source_id      text        NOT NULL,
    integration_id uuid        REFERENCES integrations (id) ON DELETE SET NULL,
    username       text        NOT NULL,
    display_name   text,
    url            text,
    joined_at      timestamptz,
    attributes     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, platform, source_id)
);

CREATE TABLE activities (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        uuid        NOT NULL,
    platform         text        NOT NULL,
    -- the platform's stable id of the activity (deterministic, never random)
    source_id        text        NOT NULL,
    integration_id   uuid        REFERENCES integrations (id) ON DELETE SET NULL,
    activity_type    text        NOT NULL,
    occurred_at      timestamptz NOT NULL,
    member_source_id text        NOT NULL,
    source_parent_id text,
    channel          text,
    title            text,
    body             text,
    url              text,
    attributes       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, platform, source_id)
);
CREATE INDEX activities_member ON activities (tenant_id, platform, member_source_id);
CREATE INDEX activities_integration ON activities (integration_id, occurred_at DESC);

-- global limits: units used per (key, window), shared by every worker
CREATE TABLE rate_limit_windows (
    key          text        NOT NULL,
    window_start timestamptz NOT NULL,
    used         bigint      NOT NULL,
    PRIMARY KEY (key, window_start)
);
