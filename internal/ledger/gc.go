package ledger

import "context"

// DigestUse is one way an image was deployed to an environment: every
// deployment of the digest to the environment that ended in (or is in)
// State, the newest one's release name.
type DigestUse struct {
	Env     string
	Digest  string
	State   DeploymentState
	Release string
}

// DigestUses returns, for every environment, each digest deployed there
// and the states its deployments are in: what the garbage collection of
// images keeps (internal/gc). Rows without a digest (none are written
// today) are left out.
func (l *Deployments) DigestUses(ctx context.Context) ([]DigestUse, error) {
	where, args := l.where("digest != ''")
	return queryAll(ctx, l.db, "read the images deployed", func(r rowScanner) (DigestUse, error) {
		var u DigestUse
		var state string
		err := r.Scan(&u.Env, &u.Digest, &state, &u.Release)
		u.State = DeploymentState(state)
		return u, err
	}, `SELECT env, digest, state, MAX(release_name) FROM deployments `+where+` GROUP BY env, digest, state ORDER BY env, digest, state`, args...)
}
