// Package smoke checks a deployed birthday-app from the outside. Its test
// carries the build tag "smoke" and needs SLIPWAY_URL, the base URL of the
// deployment:
//
//	SLIPWAY_URL=http://127.0.0.1:8080 go test -tags smoke -count=1 ./smoke
//
// When SLIPWAY_COMMIT is set too, /version must report that commit. Each run
// saves one user with a name of its own and leaves it behind.
package smoke
