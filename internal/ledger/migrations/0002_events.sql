-- The release history: every build, deployment, verification, release and
-- rollback, appended as it happens and never rewritten.
CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    at            TEXT NOT NULL,
    kind          TEXT NOT NULL,
    commit_sha    TEXT NOT NULL DEFAULT '',
    digest        TEXT NOT NULL DEFAULT '',
    env           TEXT NOT NULL DEFAULT '',
    release_name  TEXT NOT NULL DEFAULT '',
    triggered_by  TEXT NOT NULL DEFAULT '',
    outcome       TEXT NOT NULL DEFAULT '',
    message       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_env ON events (env, id);
CREATE INDEX events_commit ON events (commit_sha, id);
CREATE INDEX events_kind ON events (kind, id);
