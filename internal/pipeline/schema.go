package pipeline

import (
	"context"
	"errors"
	"fmt"

	"slipway.dev/slipway/internal/ledger"
)

// This file is the schema check (docs/migrations.md): each image declares
// the schema version its code is built for and the oldest one code must
// be built for to run once its migrations ran (its floor). A release whose
// floor is above the version now live is refused, since an automatic
// rollback could not go back to it; a rollback to a version below the
// environment's floor is refused, since it could not run. --force --reason
// overrides both and is recorded. Automatic environments take every
// commit: the deployment notes the version it leaves behind.

// ErrSchema: a version could not run on the environment's database.
var ErrSchema = errors.New("the database schema would strand a version")

// named says which deployment d is: its release (or number) and commit.
func named(d ledger.Deployment) string {
	return fmt.Sprintf("%s (%s)", describe(d), shortHash(d.Commit))
}

// broughtBy names the deployment that set m's floor.
func broughtBy(m ledger.Migrated) string {
	if m.FloorRelease != "" {
		return fmt.Sprintf("%s (%s)", m.FloorRelease, shortHash(m.FloorCommit))
	}
	return fmt.Sprintf("deployment %d (%s)", m.FloorDeployment, shortHash(m.FloorCommit))
}

// releaseSchemaProblem says why releasing next to env, which runs live and
// whose database has been migrated as m says, would strand a version; ""
// when it would not.
func releaseSchemaProblem(env string, live, next ledger.Deployment, m ledger.Migrated) string {
	s := next.Schema
	if !s.Known {
		return ""
	}
	if m.Known && s.Version < m.Floor {
		return fmt.Sprintf("it is built for schema %d, but the database of %s has been migrated by %s (from %s), which needs code built for schema %d or later: it could not run there; release a newer commit",
			s.Version, env, m.FloorBy, broughtBy(m), m.Floor)
	}
	if live.ID == 0 || s.Floor == 0 || live.Commit == next.Commit {
		return ""
	}
	if !live.Schema.Known {
		return fmt.Sprintf("its migration %s needs code built for schema %d or later, and %s runs %s, whose image declares no schema (built before schema.migrations was set, or by a CI that does not set the dev.slipway.schema.* labels): slipway cannot tell whether an automatic rollback could return to it; release first a commit whose image declares its schema, or override with --force --reason",
			s.FloorBy, s.Floor, env, named(live))
	}
	if live.Schema.Version >= s.Floor {
		return ""
	}
	return fmt.Sprintf("its migration %s needs code built for schema %d or later, and %s runs %s, built for schema %d: once the migration ran, an automatic rollback could not return to it; release first a commit built for schema %d or later whose code no longer needs what %s changes (see docs/migrations.md), then this one; or override with --force --reason",
		s.FloorBy, s.Floor, env, named(live), live.Schema.Version, s.Floor, s.FloorBy)
}

// rollbackSchemaProblem says why target could not run on env's database,
// migrated as m says; "" when it can.
func rollbackSchemaProblem(env string, target ledger.Deployment, m ledger.Migrated) string {
	if !m.Known || m.Floor == 0 {
		return ""
	}
	if !target.Schema.Known {
		return fmt.Sprintf("the database of %s has been migrated by %s (from %s), which needs code built for schema %d or later, and the image of %s declares no schema: slipway cannot tell whether it still runs; roll back to a version built for schema %d or later (slipway history --env %s shows each version's schema), or override with --force --reason",
			env, m.FloorBy, broughtBy(m), m.Floor, named(target), m.Floor, env)
	}
	if target.Schema.Version >= m.Floor {
		return ""
	}
	return fmt.Sprintf("%s is built for schema %d, but the database of %s has been migrated by %s (from %s), which needs code built for schema %d or later: it can no longer run there; roll back to a version built for schema %d or later (slipway history --env %s shows each version's schema), or override with --force --reason",
		named(target), target.Schema.Version, env, m.FloorBy, broughtBy(m), m.Floor, m.Floor, env)
}

// strandedNote is the note of an automatic deployment d whose migrations
// leave prev, the version the environment ran, unable to run; "" when
// they do not.
func strandedNote(env string, prev, d ledger.Deployment) string {
	s := d.Schema
	if prev.ID == 0 || !s.Known || s.Floor == 0 || prev.Commit == d.Commit || (prev.Schema.Known && prev.Schema.Version >= s.Floor) {
		return ""
	}
	return fmt.Sprintf("deployed although its migration %s needs code built for schema %d or later: %s can no longer go back to %s (%s is automatic)",
		s.FloorBy, s.Floor, env, named(prev), env)
}

// releaseSchema checks a release d to e, which runs live, against the
// schema; it returns the problem, or "".
func (c *Controller) releaseSchema(ctx context.Context, e *Env, live, d ledger.Deployment) (string, error) {
	m, err := c.deps.Store.Migrated(ctx, e.Name)
	if err != nil {
		return "", err
	}
	return releaseSchemaProblem(e.Name, live, d, m), nil
}

// rollbackSchema checks a rollback of e to target against the schema; it
// returns the problem, or "".
func (c *Controller) rollbackSchema(ctx context.Context, e *Env, target ledger.Deployment) (string, error) {
	m, err := c.deps.Store.Migrated(ctx, e.Name)
	if err != nil {
		return "", err
	}
	return rollbackSchemaProblem(e.Name, target, m), nil
}

// schemaOverridden logs and notifies a release or rollback d forced past
// the schema check's problem.
func (c *Controller) schemaOverridden(ctx context.Context, d *ledger.Deployment, problem string) {
	c.log.Warn("schema check overridden", "env", d.Env, "kind", d.Kind, "commit", shortHash(d.Commit), "deployment", d.ID, "problem", problem, "reason", d.ForceReason)
	c.notify(ctx, EventBreakGlass, d.Env, fmt.Sprintf("%s of %s to %s of %s forced past the schema check (deployment %d, %s): %s; overriding: %s",
		d.Kind, shortHash(d.Commit), d.Env, c.cfg.App, d.ID, d.Trigger, d.ForceReason, problem), map[string]string{
		"commit": d.Commit, "deployment": fmt.Sprint(d.ID), "release": d.ReleaseName, "by": d.Trigger,
		"reason": d.ForceReason,
	})
}

// schemaStatus fills in what the version cur declares about the schema,
// and what the environment's database has been migrated to.
func (c *Controller) schemaStatus(ctx context.Context, cur ledger.Deployment, es *EnvStatus) error {
	if !cur.Schema.Known {
		return nil
	}
	m, err := c.deps.Store.Migrated(ctx, cur.Env)
	if err != nil {
		return err
	}
	s := cur.Schema
	es.Schema, es.Migrated = &s, &m
	return nil
}
