// Command gen writes internal/demo/birthday-app.tar, the sample service's
// source that `slipway demo` puts in its workspace. Run it with
// `go generate ./internal/demo` after changing examples/birthday-app.
package main

import (
	"flag"
	"fmt"
	"os"

	"slipway.dev/slipway/internal/demo/appsource"
)

func main() {
	src := flag.String("src", "../../examples/birthday-app", "the sample service's directory")
	out := flag.String("o", "birthday-app.tar", "the archive to write")
	flag.Parse()
	data, err := appsource.PackDir(*src)
	if err == nil {
		err = os.WriteFile(*out, data, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}
