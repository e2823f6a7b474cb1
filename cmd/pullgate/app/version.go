package app

import (
	"fmt"

	"github.com/spf13/cobra"

	"pullgate.dev/pullgate/internal/platform/version"
)

func newVersionCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print pullgate's version and the Kubernetes version it embeds",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(g.out, "pullgate %s\nkubernetes %s\n", version.Version, version.Kubernetes())
			return err
		},
	}
}
