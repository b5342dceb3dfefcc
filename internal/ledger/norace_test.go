//go:build !race

package ledger

// raceEnabled: the tests run with the race detector.
const raceEnabled = false
