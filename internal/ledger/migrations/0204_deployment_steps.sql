-- The steps of each deployment (build, deploy, health, tags, …) as they
-- happen: when each started and ended, how it ended, and its message (the
-- runtime's progress while it runs, the error when it failed). A step tried
-- again after a restart is a new row; the one interrupted is finished as
-- failed.
CREATE TABLE deployment_steps (
    id            INTEGER PRIMARY KEY,
    deployment_id INTEGER NOT NULL REFERENCES deployments (id),
    name          TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    started_at    TEXT    NOT NULL,
    finished_at   TEXT    NOT NULL DEFAULT '',
    message       TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX deployment_steps_deployment_id ON deployment_steps (deployment_id, id);
