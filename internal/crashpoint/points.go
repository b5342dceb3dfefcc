package crashpoint

// Point is a crash point: its name and where it is.
type Point struct {
	Name string
	// Where says which step of which flow reaches it, and in which
	// process: serve (slipway serve) or supervisor (an environment's local
	// supervisor, named with its environment as SCOPE/).
	Where string
}

// Points lists every crash point of slipway, in the order a push, then a
// release, then a rollback reach them. TestPointsAreInTheCode checks it
// against the calls of Hit.
var Points = []Point{
	{"fetch.head", "serve: a poll fetched the repository and found a new head of a branch, not yet queued"},
	{"build.modules", "serve: build, `go mod download` running"},
	{"build.test", "serve: build, the app's tests running"},
	{"build.compile", "serve: build, `go build` running"},
	{"build.image", "serve: build, the image made, nothing pushed"},
	{"registry.pushed", "serve: build, image pushed by digest, no tag yet"},
	{"registry.pushed.tag", "serve: build, after each tag of the push (#1 short, #2 latest, #3 sha-…)"},
	{"build.record", "serve: build, image and tags pushed, the build row not yet marked pushed"},
	{"build.recorded", "serve: build, the build row marked pushed"},
	{"deploy.recorded", "serve: automatic deploy, its ledger row written, nothing done"},
	{"deploy.image", "serve: automatic deploy, the image known (built, or taken from upstream)"},
	{"chain.image", "serve: promotion along the chain, the upstream's verified image found"},
	{"release.phase", "serve: release phase (step release of a deploy or release), its start recorded in the ledger, the command not yet handed to the runtime"},
	{"release.job", "serve: release phase on the Kubernetes runtime, its Job created (or an existing one of the same run taken up), not waited for"},
	{"release.phased", "serve: release phase, the command succeeded, its end not yet recorded in the ledger"},
	{"deploy.rollout", "serve: automatic deploy, about to hand the spec to the runtime"},
	{"deploy.rolledout", "serve: automatic deploy, the runtime rolled out, health not checked"},
	{"deploy.healthy", "serve: automatic deploy, healthy and announced (outbox row written)"},
	{"deploy.smoke", "serve: automatic deploy, before the smoke test"},
	{"deploy.tags", "serve: automatic deploy, smoke passed, before the env-NAME tag"},
	{"tag.env", "serve: env-NAME tag moved, live not yet (final environment)"},
	{"pipeline.final", "serve: any flow, the outcome's notifications in the outbox, the row's final state not yet written"},
	{"pipeline.finished", "serve: any flow, the row's final state written"},
	{"release.recorded", "serve: release, its row written after the preflight, nothing tagged"},
	{"promote.tags", "serve: release, before the RC… registry tag"},
	{"promote.tag.release", "serve: release, RC… tag in the registry, no git tag yet"},
	{"promote.git.tag", "serve: release, the annotated git tag pushed, env tags not moved"},
	{"branch.move", "serve: release or rollback, about to move the release branch"},
	{"promote.branch", "serve: release or rollback, branch moved, nothing rolled out"},
	{"promote.rollout", "serve: release or rollback, about to hand the spec to the runtime"},
	{"promote.rolledout", "serve: release or rollback, rolled out, health not checked"},
	{"undo", "serve: a failed release or rollback, about to put the previous version back (its replicas when the rollout went ahead, tags, branch)"},
	{"rollback.recorded", "serve: rollback, its row written, nothing done"},
	{"change.recorded", "serve: scale, stop or start, its row written"},
	{"change.rollout", "serve: scale, stop or start, about to hand the spec to the runtime"},
	{"notify.delivered", "serve: a notification answered 2xx, its delivery not yet recorded"},
	{"supervisor.replica.start", "supervisor: a replica's process started, not ready"},
	{"supervisor.replica.ready", "supervisor: a replica passed its first readiness check"},
	{"supervisor.replica.drain", "supervisor: an old replica taken out of the pool, draining"},
	{"supervisor.replica.stopped", "supervisor: an old replica stopped, not yet removed"},
	{"supervisor.serving", "supervisor: a rollout done, its spec not yet saved"},
}
