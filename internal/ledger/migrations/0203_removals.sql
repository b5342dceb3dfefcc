-- Environments (or whole apps) removed on purpose after they left the
-- configuration: through_id is the newest deployment of the environment at
-- its removal, so that a deployment after it makes it a leftover again.
CREATE TABLE removals (
    app        TEXT    NOT NULL,
    env        TEXT    NOT NULL,
    through_id INTEGER NOT NULL,
    removed_at TEXT    NOT NULL,
    PRIMARY KEY (app, env)
);
