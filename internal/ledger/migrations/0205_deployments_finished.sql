-- The delivery metrics (internal/dora) read the deployments of one app's
-- final environment that ended within a window (7, 30, 90 days…), and the
-- last release that went live before it: both by the time a deployment
-- ended.
CREATE INDEX deployments_app_env_finished ON deployments (app, env, finished_at);
