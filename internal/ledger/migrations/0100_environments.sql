-- The desired state of every environment, as the runtime last accepted it:
-- after a restart each environment is brought back to it. One row per
-- environment; spec is the deploy.Spec as JSON.
CREATE TABLE environments (
    environment TEXT PRIMARY KEY,
    spec        TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
