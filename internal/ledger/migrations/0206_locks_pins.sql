-- Holds on an environment kept across restarts. A lock (slipway lock ENV)
-- keeps automatic deployments waiting and refuses releases without
-- --force; a pin keeps an automatic environment on the version a rollback
-- put it on until its feed (the head of its branch, or what the
-- environment it is fed from runs) moves away from head.
-- Every lock stays, for the record: unlocked_at is '' while it holds.
CREATE TABLE locks (
    id          INTEGER PRIMARY KEY,
    app         TEXT NOT NULL,
    env         TEXT NOT NULL,
    reason      TEXT NOT NULL,
    locked_by   TEXT NOT NULL,
    locked_at   TEXT NOT NULL,
    unlocked_by TEXT NOT NULL DEFAULT '',
    unlocked_at TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX locks_held ON locks (app, env) WHERE unlocked_at = '';

CREATE TABLE pins (
    app           TEXT    NOT NULL,
    env           TEXT    NOT NULL,
    commit_sha    TEXT    NOT NULL,
    from_commit   TEXT    NOT NULL,
    head          TEXT    NOT NULL,
    deployment_id INTEGER NOT NULL,
    pinned_by     TEXT    NOT NULL,
    pinned_at     TEXT    NOT NULL,
    PRIMARY KEY (app, env)
);
