// Package config reads the service's settings from command-line flags and
// their environment-variable equivalents.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Config is the service's configuration.
type Config struct {
	// Host is the address to listen on; empty means every interface.
	Host string
	// Port is the TCP port; 0 picks a free one.
	Port int
	// DatabaseURL is sqlite:PATH, mysql://… or postgres://….
	DatabaseURL string
	// TimeZone names the zone in which "today" is decided.
	TimeZone string
	// ShutdownDelay is how long readiness reports 503 while new requests are
	// still accepted, so load balancers stop sending before the listener closes.
	ShutdownDelay time.Duration
	// ShutdownGrace bounds the wait for in-flight requests after that.
	ShutdownGrace time.Duration
	// MigrateOnStart applies the database's missing migrations when the
	// service starts. With false, `birthday-app migrate` (a release phase)
	// applies them, and the service refuses to start on a database that
	// lacks any.
	MigrateOnStart bool
}

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		Port:           8080,
		DatabaseURL:    "sqlite:birthday.db",
		TimeZone:       "UTC",
		ShutdownGrace:  10 * time.Second,
		MigrateOnStart: true,
	}
}

// setting is one flag and the environment variable that sets the same thing.
type setting struct {
	flag, env, usage string
	value            flag.Value
}

// Parse builds the configuration: defaults, overridden by environment
// variables (read through getenv), overridden by flags in args. Usage goes to
// out; for -h it returns flag.ErrHelp.
func Parse(args []string, getenv func(string) string, out io.Writer) (Config, error) {
	c := Default()
	settings := []setting{
		{"host", "HOST", "address to listen on (empty: all interfaces)", (*stringValue)(&c.Host)},
		{"port", "PORT", "TCP port to listen on", (*intValue)(&c.Port)},
		{"database-url", "DATABASE_URL", "sqlite:PATH, mysql://USER:PASSWORD@HOST:PORT/DATABASE or postgres://USER:PASSWORD@HOST:PORT/DATABASE", (*stringValue)(&c.DatabaseURL)},
		{"time-zone", "TIME_ZONE", "IANA time zone in which birthdays are counted, e.g. Europe/Berlin", (*stringValue)(&c.TimeZone)},
		{"shutdown-delay", "SHUTDOWN_DELAY", "after SIGTERM, how long to keep accepting requests while /readyz answers 503", (*durationValue)(&c.ShutdownDelay)},
		{"shutdown-grace", "SHUTDOWN_GRACE", "after that, how long to wait for in-flight requests to finish", (*durationValue)(&c.ShutdownGrace)},
		{"migrate-on-start", "MIGRATE_ON_START", "apply missing database migrations at start; false when `birthday-app migrate` runs as a release phase", (*boolValue)(&c.MigrateOnStart)},
	}
	fs := flag.NewFlagSet("birthday-app", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: birthday-app [flags]\n       birthday-app migrate [flags]   apply the database's missing migrations, then exit\n\nEach flag can also be set by the environment variable named in brackets; a flag wins.\n\n")
		fs.PrintDefaults()
	}
	for _, s := range settings {
		if v := getenv(s.env); v != "" {
			if err := s.value.Set(v); err != nil {
				return Config{}, fmt.Errorf("environment variable %s=%q: %w", s.env, v, err)
			}
		}
		fs.Var(s.value, s.flag, s.usage+" ["+s.env+"]")
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q: settings are flags such as -port 8080", fs.Arg(0))
	}
	return c, c.Validate()
}

// Validate reports the first setting that cannot work, and how to fix it.
func (c Config) Validate() error {
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("port %d is out of range: use 0 to 65535 (-port or PORT)", c.Port)
	}
	if c.DatabaseURL == "" {
		return errors.New("database URL is empty: set -database-url or DATABASE_URL, e.g. sqlite:birthday.db")
	}
	if _, err := time.LoadLocation(c.TimeZone); err != nil || c.TimeZone == "" || strings.EqualFold(c.TimeZone, "local") {
		return fmt.Errorf("time zone %q is unknown: use an IANA name such as UTC or Europe/Berlin (-time-zone or TIME_ZONE)", c.TimeZone)
	}
	if c.ShutdownDelay < 0 {
		return fmt.Errorf("shutdown delay %s is negative (-shutdown-delay or SHUTDOWN_DELAY)", c.ShutdownDelay)
	}
	if c.ShutdownGrace <= 0 {
		return fmt.Errorf("shutdown grace %s must be positive, e.g. 10s (-shutdown-grace or SHUTDOWN_GRACE)", c.ShutdownGrace)
	}
	return nil
}

// Addr is the address to listen on, host:port.
func (c Config) Addr() string {
	return net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
}

// Location is the time zone, which Validate has checked.
func (c Config) Location() *time.Location {
	loc, err := time.LoadLocation(c.TimeZone)
	if err != nil {
		return time.UTC
	}
	return loc
}

type stringValue string

func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }
func (v *stringValue) String() string     { return string(*v) }

type intValue int

func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("%q is not a whole number", s)
	}
	*v = intValue(n)
	return nil
}
func (v *intValue) String() string { return strconv.Itoa(int(*v)) }

type durationValue time.Duration

func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration such as 10s or 1m30s", s)
	}
	*v = durationValue(d)
	return nil
}
func (v *durationValue) String() string { return time.Duration(*v).String() }

type boolValue bool

func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("%q is not true or false", s)
	}
	*v = boolValue(b)
	return nil
}
func (v *boolValue) String() string   { return strconv.FormatBool(bool(*v)) }
func (v *boolValue) IsBoolFlag() bool { return true }
