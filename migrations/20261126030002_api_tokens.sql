-- Bearer tokens of the admin API and the dashboard. Only a SHA-256 digest of each token is kept:
-- the token itself is shown once, when it is created. Forward-only.
CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY,
    name         text        NOT NULL,
    role         text        NOT NULL CHECK (role IN ('read-only', 'operator')),
    -- hex SHA-256 of the token (tokens are 32 random bytes: a plain digest is enough)
    token_sha256 text        NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
