-- The PostgreSQL queue backend (SQS semantics in tables), the tick generator's slots, and when a
-- message for a run was last sent. Forward-only.

-- Messages of the `postgres` queue backend. A message is visible when `visible_at` has passed;
-- receiving it hides it for the visibility timeout and gives it a new receipt (only the latest
-- receipt may delete it or extend its visibility).
CREATE TABLE queue_messages (
    id                uuid PRIMARY KEY,
    -- several named queues may share the table
    queue             text        NOT NULL,
    body              text        NOT NULL,
    sent_at           timestamptz NOT NULL DEFAULT now(),
    -- delayed sends and in-flight messages have a future `visible_at`
    visible_at        timestamptz NOT NULL,
    receive_count     integer     NOT NULL DEFAULT 0,
    receipt           uuid,
    first_received_at timestamptz
);
-- receiving: the visible messages of a queue, oldest first
CREATE INDEX queue_messages_visible ON queue_messages (queue, visible_at);

-- Dead letters: messages redriven after too many receives, or refused by a worker with a reason.
CREATE TABLE queue_dead_letters (
    id               uuid PRIMARY KEY,
    queue            text        NOT NULL,
    body             text        NOT NULL,
    -- why the message is here, in words an operator understands
    reason           text        NOT NULL,
    receive_count    integer     NOT NULL,
    sent_at          timestamptz NOT NULL,
    dead_lettered_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX queue_dead_letters_queue ON queue_dead_letters (queue, dead_lettered_at);

-- Tick slots (UTC minutes) already emitted: two generators, or a restarted one, emit a slot once.
CREATE TABLE tick_slots (
    slot       timestamptz PRIMARY KEY CHECK (date_trunc('minute', slot) = slot),
    emitted_by text        NOT NULL,
    emitted_at timestamptz NOT NULL DEFAULT now()
);

-- When a message for this run was last sent (for a delayed message: when it is delivered). The
-- rescuer re-sends a message for a run that needs one at most once per interval.
ALTER TABLE integration_runs ADD COLUMN enqueued_at timestamptz;
-- the rescuer: pending runs nobody has taken
CREATE INDEX integration_runs_pending ON integration_runs (created_at) WHERE state = 'pending';
