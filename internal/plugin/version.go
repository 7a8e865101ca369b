package plugin

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ramp-dev/ramp/internal/version"
)

func newVersionCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the plugin's version and commit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(o.Out, version.Get())
			return err
		},
	}
}
