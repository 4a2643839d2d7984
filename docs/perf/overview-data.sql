-- The data EXPLAIN ANALYZE of the operator queries ran on (docs/perf/overview-queries.sql):
-- psql -d DB -f each migration, then this file, then the queries.
-- ~2,000 integrations, 100,000 runs, 1,000,000 streams, 1,000,000 activities, 100,000 members,
-- 43,200 tick slots (30 days), 60 budgets, 200 dead letters
\timing on
SET synchronous_commit = off;
INSERT INTO integrations (id, tenant_id, platform, status, settings, created_at)
SELECT gen_random_uuid(), '00000000-0000-0000-0000-000000000000',
       (ARRAY['github','devto','hackernews','reddit','x','slack','discord','discourse','stackoverflow'])[1 + i % 9],
       (ARRAY['done','done','done','in-progress','error','disconnected','done','pending'])[1 + i % 8],
       jsonb_build_object('n', i), now() - make_interval(days => 30) + make_interval(mins => i * 20)
FROM generate_series(1, 2000) i;

-- 50 runs per integration, one every ~14 hours; every 20th ends in error; the newest is active
-- for a quarter of the integrations; check runs carry the tick slot of their creation
CREATE TEMP TABLE ints AS SELECT id, row_number() OVER (ORDER BY id) AS n FROM integrations;
INSERT INTO integration_runs (id, integration_id, onboarding, state, trigger_key, delayed_until,
    delay_reason, attempt, lease_owner, lease_expires_at, error, streams_processed,
    activities_created, created_at, started_at, finished_at)
SELECT gen_random_uuid(), ints.id, k = 1,
       CASE WHEN k = 50 AND ints.n % 4 = 0 THEN (ARRAY['pending','processing','delayed'])[1 + ints.n % 3]
            WHEN k % 20 = 0 THEN 'error' ELSE 'processed' END,
       CASE WHEN k > 1 THEN 'tick:' || to_char(date_trunc('minute', c.at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') END,
       CASE WHEN k = 50 AND ints.n % 4 = 0 AND ints.n % 3 = 2 THEN now() + interval '20 minutes' END,
       CASE WHEN k = 50 AND ints.n % 4 = 0 AND ints.n % 3 = 2 THEN 'rate limited while processing `x`' END,
       1, CASE WHEN k = 50 AND ints.n % 4 = 0 AND ints.n % 3 = 1 THEN 'w1' END,
       CASE WHEN k = 50 AND ints.n % 4 = 0 AND ints.n % 3 = 1 THEN now() + interval '1 minute' END,
       CASE WHEN k % 20 = 0 AND NOT (k = 50 AND ints.n % 4 = 0) THEN jsonb_build_object('kind','fatal','hook','process_stream','message','boom','chain',jsonb_build_array('boom'),'failures',1,'at',c.at) END,
       10, 50, c.at, c.at, c.at + interval '2 minutes'
FROM ints, generate_series(1, 50) k,
     LATERAL (SELECT now() - make_interval(days => 30) + make_interval(mins => k * 860 + (ints.n % 860)::int) AS at) c;

UPDATE integration_runs SET waiting_platform = 'github', waiting_credential = 'fp' || (extract(epoch FROM created_at)::int8 % 20), waiting_resource = 'core'
WHERE state = 'delayed';
UPDATE integration_runs SET finished_at = NULL WHERE state IN ('pending','processing','delayed');

-- 10 streams per run, finished a few seconds apart
INSERT INTO integration_streams (id, run_id, identifier, chain_identifier, source, state, error,
    records, activities_created, created_at, started_at, finished_at)
SELECT gen_random_uuid(), r.id, 'stream:' || s, 'stream:' || s, 'stream:' || s,
       CASE WHEN r.state = 'error' AND s = 10 THEN 'error'
            WHEN r.state IN ('pending','processing','delayed') AND s > 5 THEN 'pending'
            ELSE 'processed' END,
       CASE WHEN r.state = 'error' AND s = 10 THEN r.error END,
       5, 5, r.created_at, r.created_at,
       CASE WHEN r.state IN ('pending','processing','delayed') AND s > 5 THEN NULL
            ELSE r.created_at + make_interval(secs => s * 10) END
FROM integration_runs r, generate_series(1, 10) s;

INSERT INTO members (tenant_id, platform, source_id, integration_id, username)
SELECT '00000000-0000-0000-0000-000000000000', i.platform, i.id || ':m' || m, i.id, 'user' || m
FROM integrations i, generate_series(1, 50) m;

INSERT INTO activities (tenant_id, platform, source_id, integration_id, activity_type, occurred_at,
    member_source_id)
SELECT '00000000-0000-0000-0000-000000000000', i.platform, i.id || ':a' || a, i.id, 'comment',
       now() - make_interval(mins => a), i.id || ':m' || (a % 50)
FROM integrations i, generate_series(1, 500) a;

INSERT INTO tick_slots (slot, emitted_by, emitted_at)
SELECT date_trunc('minute', now()) - make_interval(mins => m), 'gen-1', now() - make_interval(mins => m)
FROM generate_series(0, 43199) m;

INSERT INTO rate_limit_budgets (platform, credential, resource, limit_total, remaining, reset_at, spend_per_min, requests)
SELECT 'github', 'fp' || c, r, 5000, 1000, now() + interval '20 minutes', 10, 100
FROM generate_series(0, 19) c, unnest(ARRAY['core','search','graphql']) r;

INSERT INTO queue_dead_letters (id, queue, body, reason, receive_count, sent_at)
SELECT gen_random_uuid(), 'tributary', '{}', 'bad', 5, now() FROM generate_series(1, 200);
VACUUM ANALYZE;
