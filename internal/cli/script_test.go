package cli

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/spf13/cobra"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"slipway": func() {
			root := &cobra.Command{Use: "slipway", SilenceUsage: true, SilenceErrors: true}
			AddControllerCommands(root)
			err := root.ExecuteContext(context.Background())
			if err != nil {
				fmt.Fprintln(os.Stderr, "slipway:", err)
			}
			os.Exit(ExitCode(err))
		},
	})
}

// TestScripts runs the controller commands' sessions that need no running
// controller (test/e2e runs the ones that do).
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{Dir: "testdata/script"})
}
