-- Every build of a commit: what was asked, what happened, where its log is.
-- Times are UTC text in a fixed-width RFC 3339 form, so they sort as text
-- and read the same in SQLite and PostgreSQL.
CREATE TABLE builds (
    id             INTEGER PRIMARY KEY,
    app            TEXT    NOT NULL,
    commit_sha     TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    image          TEXT    NOT NULL DEFAULT '',
    digest         TEXT    NOT NULL DEFAULT '',
    reason         TEXT    NOT NULL DEFAULT '',
    test_ms        BIGINT  NOT NULL DEFAULT 0,
    build_ms       BIGINT  NOT NULL DEFAULT 0,
    log_path       TEXT    NOT NULL DEFAULT '',
    triggered_by   TEXT    NOT NULL DEFAULT '',
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL,
    finished_at    TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX builds_commit ON builds (commit_sha, id);
CREATE INDEX builds_state ON builds (state);
