// Command kubectl-ramp is the kubectl plugin for ramp Rollouts: installed on the PATH it runs
// as `kubectl ramp promote|abort|pause|resume|retry|status|list|dashboard`. See
// docs/kubectl-ramp.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/ramp-dev/ramp/internal/plugin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := plugin.NewRootCommand(genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubectl-ramp:", err)
	}
	os.Exit(plugin.ExitCode(err))
}
