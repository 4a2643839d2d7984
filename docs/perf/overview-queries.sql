-- The admin API's and dashboard's queries (store::overview, admin::views), as they run, for
-- EXPLAIN (ANALYZE, BUFFERS) on the data of overview-data.sql.
\set ON_ERROR_STOP 1
SELECT id AS some_int FROM integrations WHERE platform = 'github' ORDER BY created_at LIMIT 1 \gset
SELECT id AS some_run FROM integration_runs WHERE integration_id = :'some_int' ORDER BY created_at DESC LIMIT 1 \gset
SELECT id AS error_run FROM integration_runs WHERE state = 'error' LIMIT 1 \gset
\echo '### Q1 integrations (no filter, 100)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
    SELECT i.id, i.tenant_id, i.platform, i.status, i.settings, i.last_processed_at, i.created_at,
           (SELECT count(*) FROM activities a WHERE a.integration_id = i.id) AS activities,
           (SELECT count(*) FROM members m WHERE m.integration_id = i.id) AS members,
           active.id AS active_run_id, active.state AS active_run_state,
           failed.id AS last_error_run_id, failed.error AS last_error
    FROM integrations i
    LEFT JOIN LATERAL (SELECT id, state FROM integration_runs r
                       WHERE r.integration_id = i.id AND r.state IN ('pending', 'processing', 'delayed')
                       LIMIT 1) active ON true
    LEFT JOIN LATERAL (SELECT id, error FROM integration_runs r
                       WHERE r.integration_id = i.id AND r.error IS NOT NULL
                       ORDER BY r.created_at DESC LIMIT 1) failed ON true
    WHERE (NULL::text IS NULL OR i.platform = NULL) AND (NULL::text IS NULL OR i.status = NULL)
      AND (NULL::uuid IS NULL OR i.tenant_id = NULL)
    ORDER BY i.created_at DESC, i.id LIMIT 100 OFFSET 0;
\echo '### Q2 integration detail'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
    SELECT i.id,
           (SELECT count(*) FROM activities a WHERE a.integration_id = i.id) AS activities,
           (SELECT count(*) FROM members m WHERE m.integration_id = i.id) AS members,
           active.id, failed.id, failed.error
    FROM integrations i
    LEFT JOIN LATERAL (SELECT id, state FROM integration_runs r
                       WHERE r.integration_id = i.id AND r.state IN ('pending', 'processing', 'delayed')
                       LIMIT 1) active ON true
    LEFT JOIN LATERAL (SELECT id, error FROM integration_runs r
                       WHERE r.integration_id = i.id AND r.error IS NOT NULL
                       ORDER BY r.created_at DESC LIMIT 1) failed ON true
    WHERE i.id = :'some_int';
\echo '### Q3 runs (no filter, 100)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
    SELECT r.id, r.integration_id, i.platform, r.onboarding, r.state, r.delayed_until,
           r.delay_reason, r.attempt, r.lease_owner, r.error, r.streams_processed,
           r.streams_errored, r.members_created, r.activities_created, r.activities_updated,
           r.created_at, r.started_at, r.finished_at
    FROM integration_runs r JOIN integrations i ON i.id = r.integration_id
    WHERE (NULL::uuid IS NULL OR r.integration_id = NULL) AND (NULL::text IS NULL OR i.platform = NULL)
      AND (cardinality('{}'::text[]) = 0 OR r.state = ANY('{}'::text[]))
    ORDER BY r.created_at DESC, r.id LIMIT 100 OFFSET 0;
\echo '### Q4 runs in flight (overview, 50)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
    SELECT r.id, i.platform, r.state, r.error
    FROM integration_runs r JOIN integrations i ON i.id = r.integration_id
    WHERE (NULL::uuid IS NULL OR r.integration_id = NULL) AND (NULL::text IS NULL OR i.platform = NULL)
      AND (cardinality('{pending,processing,delayed}'::text[]) = 0 OR r.state = ANY('{pending,processing,delayed}'::text[]))
    ORDER BY r.created_at DESC, r.id LIMIT 50 OFFSET 0;
\echo '### Q5 runs of a state (error, 100)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
    SELECT r.id, i.platform, r.state, r.error
    FROM integration_runs r JOIN integrations i ON i.id = r.integration_id
    WHERE (NULL::uuid IS NULL OR r.integration_id = NULL) AND (NULL::text IS NULL OR i.platform = NULL)
      AND (cardinality('{error}'::text[]) = 0 OR r.state = ANY('{error}'::text[]))
    ORDER BY r.created_at DESC, r.id LIMIT 100 OFFSET 0;
\echo '### Q6 runs of a platform (github, 100)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
    SELECT r.id, i.platform, r.state, r.error
    FROM integration_runs r JOIN integrations i ON i.id = r.integration_id
    WHERE (NULL::uuid IS NULL OR r.integration_id = NULL) AND ('github'::text IS NULL OR i.platform = 'github')
      AND (cardinality('{}'::text[]) = 0 OR r.state = ANY('{}'::text[]))
    ORDER BY r.created_at DESC, r.id LIMIT 100 OFFSET 0;
\echo '### Q7 runs of an integration (20)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
    SELECT r.id, i.platform, r.state, r.error
    FROM integration_runs r JOIN integrations i ON i.id = r.integration_id
    WHERE (:'some_int'::uuid IS NULL OR r.integration_id = :'some_int') AND (NULL::text IS NULL OR i.platform = NULL)
      AND (cardinality('{}'::text[]) = 0 OR r.state = ANY('{}'::text[]))
    ORDER BY r.created_at DESC, r.id LIMIT 20 OFFSET 0;
\echo '### Q8 streams of a run, errors only (100)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
    SELECT id, parent_id, identifier, source, state, retries, page_number, delayed_until,
           error, records, members_created, activities_created, activities_updated,
           created_at, finished_at
    FROM integration_streams
    WHERE run_id = :'error_run' AND (NOT true OR state = 'error')
    ORDER BY seq LIMIT 100 OFFSET 0;
\echo '### Q9 ticks (100)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
    WITH recent AS (SELECT slot, emitted_by, emitted_at FROM tick_slots ORDER BY slot DESC LIMIT 100)
    SELECT t.slot, t.emitted_by, t.emitted_at,
           (SELECT count(*) FROM integration_runs r
            WHERE r.trigger_key = 'tick:' || to_char(t.slot AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')) AS runs_created
    FROM recent t ORDER BY t.slot DESC;
\echo '### Q10 activities per minute per platform (60 min)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
    SELECT i.platform, date_trunc('minute', s.finished_at) AS minute,
           sum(s.activities_created + s.activities_updated)::int8 AS activities
    FROM integration_streams s
    JOIN integration_runs r ON r.id = s.run_id
    JOIN integrations i ON i.id = r.integration_id
    WHERE s.finished_at > now() - make_interval(mins => 60)
    GROUP BY 1, 2 ORDER BY 2, 1;
\echo '### Q11 quotas'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
    SELECT b.platform, b.credential, b.resource, b.limit_total, b.remaining, b.reset_at,
           coalesce(w.runs, 0) AS runs_waiting, coalesce(w.ids, '{}') AS waiting_run_ids
    FROM rate_limit_budgets b
    LEFT JOIN LATERAL (
        SELECT count(*) AS runs, (array_agg(r.id ORDER BY r.delayed_until, r.id))[1:20] AS ids
        FROM integration_runs r
        WHERE r.state = 'delayed' AND r.waiting_platform IS NOT NULL
          AND r.waiting_platform = b.platform AND r.waiting_credential = b.credential
          AND r.waiting_resource = b.resource) w ON true
    WHERE NULL::text IS NULL OR b.platform = NULL
    ORDER BY b.platform, b.credential, b.resource;
\echo '### Q12 runs by state (metrics, every scrape)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
    SELECT state, count(*) FROM integration_runs GROUP BY state;
\echo '### Q13 status counts'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
    SELECT platform, status, count(*) AS count FROM integrations GROUP BY platform, status ORDER BY platform, status;
\echo '### Q14 live progress of the runs in flight'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
    SELECT run_id, count(*) AS streams_total,
           count(*) FILTER (WHERE state IN ('processed', 'error')) AS streams_done,
           coalesce(sum(activities_created), 0)::int8 AS activities_new,
           coalesce(sum(activities_updated), 0)::int8 AS activities_updated
    FROM integration_streams WHERE run_id = ANY(ARRAY(SELECT id FROM integration_runs WHERE state IN ('pending','processing','delayed') LIMIT 50)) GROUP BY run_id;
\echo '### Q15 a run progress'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
    SELECT count(*) FILTER (WHERE state = 'pending') AS pending,
           count(*) FILTER (WHERE state = 'processed') AS processed,
           coalesce(sum(activities_created), 0)::int8
    FROM integration_streams WHERE run_id = :'some_run';
