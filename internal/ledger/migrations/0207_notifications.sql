-- The outbox of outgoing webhooks: one row per event and destination,
-- written when the event happens and delivered afterwards, again and again
-- until the destination answers 2xx or the row is a day old. delivery_id is
-- sent with every attempt (Slipway-Delivery) so that receivers can drop a
-- second copy; body is the exact bytes posted and signed. sending_since is
-- set while an attempt is in flight: a row that still has it at start was
-- interrupted and is sent again at once.
CREATE TABLE notifications (
    id              INTEGER PRIMARY KEY,
    delivery_id     TEXT    NOT NULL UNIQUE,
    app             TEXT    NOT NULL,
    event           TEXT    NOT NULL,
    destination     TEXT    NOT NULL,
    url             TEXT    NOT NULL,
    format          TEXT    NOT NULL,
    secret_env      TEXT    NOT NULL DEFAULT '',
    body            TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT    NOT NULL,
    next_attempt_at TEXT    NOT NULL,
    sending_since   TEXT    NOT NULL DEFAULT '',
    last_attempt_at TEXT    NOT NULL DEFAULT '',
    delivered_at    TEXT    NOT NULL DEFAULT '',
    last_error      TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX notifications_due ON notifications (state, next_attempt_at);
CREATE INDEX notifications_app ON notifications (app, id);
