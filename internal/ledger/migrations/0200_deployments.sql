-- Every rollout of an environment: automatic deploys of master, releases,
-- rollbacks and scale changes. A row is written before the rollout starts
-- (pending), and finished as succeeded, failed, refused or rolled-back.
CREATE TABLE deployments (
    id           INTEGER PRIMARY KEY,
    env          TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    trigger      TEXT    NOT NULL,
    commit_sha   TEXT    NOT NULL,
    image        TEXT    NOT NULL DEFAULT '',
    digest       TEXT    NOT NULL DEFAULT '',
    release_name TEXT    NOT NULL DEFAULT '',
    replicas     INTEGER NOT NULL DEFAULT 0,
    previous_id  INTEGER NOT NULL DEFAULT 0,
    state        TEXT    NOT NULL,
    step         TEXT    NOT NULL DEFAULT '',
    reason       TEXT    NOT NULL DEFAULT '',
    forced       INTEGER NOT NULL DEFAULT 0,
    force_reason TEXT    NOT NULL DEFAULT '',
    note         TEXT    NOT NULL DEFAULT '',
    created_at   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL,
    finished_at  TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX deployments_env_id ON deployments (env, id);
CREATE INDEX deployments_env_state_id ON deployments (env, state, id);
CREATE INDEX deployments_state ON deployments (state);
CREATE INDEX deployments_commit ON deployments (commit_sha, env, id);
CREATE INDEX deployments_release_name ON deployments (release_name);
