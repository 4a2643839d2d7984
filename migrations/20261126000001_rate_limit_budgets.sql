-- Every credential's rate-limit state as its platform last reported it, shared by every worker and
-- command: workers pace from it, the operator surface shows it. Forward-only.
CREATE TABLE rate_limit_budgets (
    platform       text        NOT NULL,
    -- a stable fingerprint of the credential, never the secret itself ('' for anonymous requests)
    credential     text        NOT NULL,
    -- the platform's resource or bucket (GitHub `core`/`search`, a Discord route bucket…); '' for one budget
    resource       text        NOT NULL DEFAULT '',
    -- the window's budget, what is left of it, and when it resets, as last reported
    limit_total    bigint,
    remaining      bigint,
    reset_at       timestamptz,
    -- a refusal (429, a rate-limit 403) said: nothing before this
    blocked_until  timestamptz,
    -- how fast the budget is being spent (requests per minute, a moving estimate)
    spend_per_min  float8,
    -- requests counted since the row was created
    requests       bigint      NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform, credential, resource)
);
