-- The release phase of each deployment that has one (a command run from the
-- new image before traffic moves, such as database migrations): written
-- before the command starts (running), then finished as succeeded or
-- failed. A deployment taken up again after a restart does not run again a
-- release phase that succeeded; one left running did not finish, and runs
-- again.
CREATE TABLE release_phases (
    deployment_id INTEGER PRIMARY KEY REFERENCES deployments (id),
    digest        TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    started_at    TEXT    NOT NULL,
    finished_at   TEXT    NOT NULL DEFAULT ''
);
