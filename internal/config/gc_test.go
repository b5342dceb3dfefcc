package config

import (
	"strings"
	"testing"
	"time"
)

func TestGCErrors(t *testing.T) {
	const head = "app: demo\nrepo:\n  url: ./app.git\n"
	checkParseErrors(t, []parseErrorCase{
		{"negative and too often", head + "gc:\n  keepBuilds: -1\n  interval: 10s\n",
			[]string{
				`f.yaml:5: gc.keepBuilds: -1 is negative: give how many of the newest builds to keep, such as 10`,
				`f.yaml:6: gc.interval: 10s is too short: collect at most once a minute, such as 1h (or set gc.disabled: true)`,
			}},
	})
}

func TestGCDefaults(t *testing.T) {
	const head = "app: demo\nrepo:\n  url: ./app.git\n"
	c, err := Parse("f.yaml", strings.NewReader(head))
	if err != nil {
		t.Fatal(err)
	}
	if c.GC.Disabled || c.GC.Keep() != 10 || c.GC.Every() != time.Hour {
		t.Errorf("default gc = %+v (keep %d, every %s), want enabled, keep 10, every 1h", c.GC, c.GC.Keep(), c.GC.Every())
	}
	c, err = Parse("f.yaml", strings.NewReader(head+"gc: {keepBuilds: 3, interval: 2m, disabled: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if !c.GC.Disabled || c.GC.Keep() != 3 || c.GC.Every() != 2*time.Minute {
		t.Errorf("gc = %+v, want disabled, keep 3, every 2m", c.GC)
	}
}
