-- The delivery metrics (internal/dora) read the deployments of one app's
-- final environment that ended within a window (7, 30, 90 days…), and the
-- last release that went live before it, by the time each ended
-- (Deployments.Outcomes). The index holds every column they read, so that
-- a window of 100,000 deployments is read from it alone.
CREATE INDEX deployments_app_env_finished ON deployments (app, env, finished_at, kind, state, step, forced, commit_sha, note);
