package main

import (
	"io"

	"github.com/spf13/cobra"
)

func newKeepaliveLabCmd(stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{Use: "lab", Short: "Run dead-connection scenarios in network namespaces", Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return usagef("lab: not built yet") }}
}
