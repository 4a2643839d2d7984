-- How fast each budget is being spent, and which budget a run deferred by a rate limit waits on.
-- Forward-only.

-- The answer the spend rate was last computed from (its remaining, its window's reset, when it
-- was recorded): the next answer of the same window gives the pace since, smoothed into
-- `spend_per_min`; an answer of a new window starts the rate again.
ALTER TABLE rate_limit_budgets
    ADD COLUMN observed_remaining bigint,
    ADD COLUMN observed_reset_at  timestamptz,
    ADD COLUMN observed_at        timestamptz;

-- The budget (`rate_limit_budgets`' key) a run deferred by a rate limit waits on, written by the
-- statement that defers it; null for any other wait.
ALTER TABLE integration_runs
    ADD COLUMN waiting_platform   text,
    ADD COLUMN waiting_credential text,
    ADD COLUMN waiting_resource   text;
CREATE INDEX integration_runs_waiting
    ON integration_runs (waiting_platform, waiting_credential, waiting_resource, delayed_until)
    WHERE state = 'delayed' AND waiting_platform IS NOT NULL;
