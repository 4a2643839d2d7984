-- Indexes for what operators read (store::overview, admin::views: the admin API and the
-- dashboard), chosen with EXPLAIN ANALYZE on a database of 2,000 integrations, 100,000 runs,
-- 1,000,000 streams and 1,000,000 activities (README, "Admin API and dashboard"). Forward-only.

-- listings newest first (integrations, runs), read a page at a time instead of sorted whole
CREATE INDEX integrations_recent ON integrations (created_at DESC, id);
CREATE INDEX integration_runs_recent ON integration_runs (created_at DESC, id);
-- an integration's last error
CREATE INDEX integration_runs_failed ON integration_runs (integration_id, created_at DESC)
    WHERE error IS NOT NULL;
-- the runs each tick slot created
CREATE INDEX integration_runs_tick ON integration_runs (trigger_key) WHERE trigger_key IS NOT NULL;
-- activities written per minute over the last hour (the overview's chart)
CREATE INDEX integration_streams_finished ON integration_streams (finished_at)
    WHERE finished_at IS NOT NULL;
-- an integration's member count
CREATE INDEX members_integration ON members (integration_id);
