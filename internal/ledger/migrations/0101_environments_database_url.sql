-- A spec recorded without DATABASE_URL ran with the local runtime's own
-- SQLite database, sqlite:DATA_DIR/APP.db, which the runtime added by
-- itself. That default now comes from the configuration as
-- sqlite:$DATA_DIR/APP.db, written into the spec, and the runtime adds
-- nothing: record it in the specs written before, so that an environment
-- restored from one keeps its database.
UPDATE environments
SET spec = json_set(spec, '$.env', json_patch(coalesce(json_extract(spec, '$.env'), '{}'),
    json_object('DATABASE_URL', 'sqlite:$DATA_DIR/' || json_extract(spec, '$.app') || '.db')))
WHERE json_type(spec, '$.env.DATABASE_URL') IS NULL;
