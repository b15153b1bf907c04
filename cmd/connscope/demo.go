package main

import (
	"io"

	"github.com/spf13/cobra"
)

func newDemoCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{Use: "demo", Short: "Reproduce the load-balancer idle-close race on loopback", Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return nil }}
}
