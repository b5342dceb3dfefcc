//go:build integration && !race

package test

const raceEnabled = false
