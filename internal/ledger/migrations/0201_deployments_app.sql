-- One ledger holds the deployments of several applications: each row names
-- its app. Rows written before are the one app's; slipway claims them for
-- it at start (Deployments.ClaimUnowned). Every lookup is led by app, so
-- the indexes are too.
ALTER TABLE deployments ADD COLUMN app TEXT NOT NULL DEFAULT '';
DROP INDEX deployments_env_id;
DROP INDEX deployments_env_state_id;
DROP INDEX deployments_state;
DROP INDEX deployments_commit;
DROP INDEX deployments_release_name;
CREATE INDEX deployments_app_env_id ON deployments (app, env, id);
CREATE INDEX deployments_app_env_state_id ON deployments (app, env, state, id);
CREATE INDEX deployments_app_env_kind_state_id ON deployments (app, env, kind, state, id);
CREATE INDEX deployments_app_state ON deployments (app, state);
CREATE INDEX deployments_app_commit ON deployments (app, commit_sha, env, id);
CREATE INDEX deployments_app_release_name ON deployments (app, release_name);
-- Two apps may build the same commit (two clones of one repository).
CREATE INDEX builds_app_commit ON builds (app, commit_sha, id);
