package config

import "time"

// GC is the garbage collection of the app's images (docs/gc.md): images
// that nothing needs are deleted from the registry, and the local
// runtime's unpacked copies of images no environment runs are removed.
// What every environment ever ran, and the newest KeepBuilds builds, are
// kept.
type GC struct {
	// Disabled turns the periodic collection off; `slipway gc` still
	// runs on request.
	Disabled bool `yaml:"disabled,omitempty"`
	// KeepBuilds is how many of the newest builds keep their image even
	// when no environment ran it. Default DefaultGCKeepBuilds.
	KeepBuilds int `yaml:"keepBuilds,omitempty"`
	// Interval is how often `slipway serve` collects. Default
	// DefaultGCInterval; at least a minute.
	Interval time.Duration `yaml:"interval,omitempty"`
}

// GC defaults.
const (
	DefaultGCKeepBuilds = 10
	DefaultGCInterval   = time.Hour
	minGCInterval       = time.Minute
)

// Keep is KeepBuilds, or its default.
func (g GC) Keep() int {
	if g.KeepBuilds > 0 {
		return g.KeepBuilds
	}
	return DefaultGCKeepBuilds
}

// Every is Interval, or its default.
func (g GC) Every() time.Duration {
	if g.Interval > 0 {
		return g.Interval
	}
	return DefaultGCInterval
}

// gc checks the app's gc settings.
func (v *validator) gc(g GC) {
	if g.KeepBuilds < 0 {
		v.add("gc.keepBuilds", "%d is negative: give how many of the newest builds to keep, such as %d", g.KeepBuilds, DefaultGCKeepBuilds)
	}
	if g.Interval < 0 || (g.Interval > 0 && g.Interval < minGCInterval) {
		v.add("gc.interval", "%s is too short: collect at most once a minute, such as 1h (or set gc.disabled: true)", g.Interval)
	}
}
