-- Data out: the transactional outbox, subscriptions and their dead letters. Forward-only.

-- One row per change that committed (written in the change's own transaction) and per run event.
CREATE TABLE events (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- insertion order: the sequencer numbers committed events in this order
    pos            bigint GENERATED ALWAYS AS IDENTITY,
    -- the per-tenant sequence, assigned after commit by one sequencer at a time, so that a reader
    -- that has seen seq N has seen every seq below N (null: not numbered yet)
    seq            bigint,
    tenant_id      uuid        NOT NULL,
    platform       text,
    integration_id uuid,
    event_type     text        NOT NULL,
    channel        text,
    -- the record as stored (or the run's summary), versioned by `schema_version`
    data           jsonb       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    sequenced_at   timestamptz,
    UNIQUE (tenant_id, seq)
);
CREATE INDEX events_unsequenced ON events (pos) WHERE seq IS NULL;
CREATE INDEX events_tenant_time ON events (tenant_id, created_at);

CREATE TABLE event_sequences (
    tenant_id uuid PRIMARY KEY,
    last_seq  bigint NOT NULL
);

CREATE TABLE subscriptions (
    id              uuid PRIMARY KEY,
    tenant_id       uuid        NOT NULL,
    name            text        NOT NULL,
    state           text        NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'paused')),
    paused_reason   text,
    -- the filter: an empty array matches everything
    platforms       text[]      NOT NULL DEFAULT '{}',
    event_types     text[]      NOT NULL DEFAULT '{}',
    integration_ids uuid[]      NOT NULL DEFAULT '{}',
    channels        text[]      NOT NULL DEFAULT '{}',
    target_kind     text        NOT NULL CHECK (target_kind IN ('webhook', 'sqs')),
    -- an HTTPS endpoint or an SQS queue URL
    target_url      text        NOT NULL,
    -- signing secrets of a webhook (`whsec_` + base64); never logged nor returned by listings
    secret          text,
    previous_secret text,
    previous_secret_expires_at timestamptz,
    batch_size      integer     NOT NULL DEFAULT 100 CHECK (batch_size BETWEEN 1 AND 10000),
    linger_ms       integer     NOT NULL DEFAULT 0 CHECK (linger_ms >= 0),
    -- an event is delivered no earlier than its creation + delay
    delay_secs      integer     NOT NULL DEFAULT 0 CHECK (delay_secs >= 0),
    -- a digest: at most one delivery per interval, of everything due, in one batch
    digest_secs     integer     CHECK (digest_secs > 0),
    -- every event up to this seq was delivered or dead-lettered
    cursor_seq      bigint      NOT NULL DEFAULT 0,
    -- the head batch's failures, when it may be tried again, since when it fails
    failures        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    failing_since   timestamptz,
    last_error      text,
    last_delivered_at timestamptz,
    delivered_count bigint      NOT NULL DEFAULT 0,
    -- one dispatcher at a time; attempt is the fencing token of its writes
    attempt         bigint      NOT NULL DEFAULT 0,
    lease_owner     text,
    lease_expires_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((target_kind = 'webhook') = (secret IS NOT NULL))
);
CREATE INDEX subscriptions_tenant ON subscriptions (tenant_id);

CREATE TABLE event_dead_letters (
    subscription_id uuid        NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    event_id        uuid        NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    seq             bigint      NOT NULL,
    state           text        NOT NULL DEFAULT 'dead' CHECK (state IN ('dead', 'redrive', 'redriven')),
    attempts        integer     NOT NULL,
    last_status     integer,
    last_response   text,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    redriven_at     timestamptz,
    PRIMARY KEY (subscription_id, event_id)
);
CREATE INDEX event_dead_letters_redrive ON event_dead_letters (subscription_id, seq)
    WHERE state = 'redrive';
