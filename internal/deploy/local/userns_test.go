package local

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSubIDBase(t *testing.T) {
	tests := []struct {
		name, file string
		want       int
		err        string
	}{
		{"no slipway line", "alice:100000:65536\n", defaultIDBase, ""},
		{"slipway's range", "alice:100000:65536\nslipway:300000:65536\n", 300000, ""},
		{"too small", "slipway:300000:1000\n", 0, "slipway has 1000 ids; replicas need 65536"},
		{"malformed", "slipway:x:65536\n", 0, "is not NAME:START:COUNT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "subuid")
			if err := os.WriteFile(p, []byte(tt.file), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := subIDBase(p)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("subIDBase = %d, %v; want an error saying %q", got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("subIDBase = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
	if got, err := subIDBase(filepath.Join(t.TempDir(), "none")); err != nil || got != defaultIDBase {
		t.Errorf("without the file: %d, %v; want %d", got, err, defaultIDBase)
	}
}

func TestIDMapShift(t *testing.T) {
	m := idMap{UID: 100000, GID: 200000}
	for in, want := range map[int]int{0: 100000, 1000: 101000, 65534: 165534, 100000: 100000, 165535: 165535, 327680 + 1000: 101000} {
		if got := m.hostUID(in); got != want {
			t.Errorf("hostUID(%d) = %d, want %d", in, got, want)
		}
	}
	if got := m.hostGID(5); got != 200005 {
		t.Errorf("hostGID(5) = %d", got)
	}
}

func TestSeccompFilterAssembles(t *testing.T) {
	ins, err := seccompFilter()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(deniedSyscalls) + len(archDeniedSyscalls); len(ins) < n+8 {
		t.Errorf("%d instructions for %d denied calls", len(ins), n)
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{512: "512 B", 64 << 20: "64 MiB", 1536 << 20: "1.5 GiB", 1 << 30: "1 GiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
