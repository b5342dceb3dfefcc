-- The schema each image brings (its image labels, docs/migrations.md): the
-- highest migration number it holds (schema_version, -1 when the image
-- does not say) and the oldest schema version code must be built for to
-- run once its migrations ran (schema_floor), with the migration that
-- declares it (schema_floor_by). What an environment's database has been
-- migrated to is read from its deployments (Deployments.Migrated).
ALTER TABLE builds ADD COLUMN schema_version INTEGER NOT NULL DEFAULT -1;
ALTER TABLE builds ADD COLUMN schema_floor INTEGER NOT NULL DEFAULT 0;
ALTER TABLE builds ADD COLUMN schema_floor_by TEXT NOT NULL DEFAULT '';
ALTER TABLE deployments ADD COLUMN schema_version INTEGER NOT NULL DEFAULT -1;
ALTER TABLE deployments ADD COLUMN schema_floor INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deployments ADD COLUMN schema_floor_by TEXT NOT NULL DEFAULT '';
