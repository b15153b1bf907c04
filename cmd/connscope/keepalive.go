package main

import (
	"io"

	"github.com/spf13/cobra"
)

// newKeepaliveCmd groups the keepalive subcommands (server, client, lab, explain).
func newKeepaliveCmd(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keepalive",
		Short: "Measure and explain how fast TCP settings detect a dead connection",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return usagef("%s: missing subcommand", cmd.CommandPath())
		},
	}
	cmd.AddCommand(newKeepaliveLabCmd(stdout, stderr))
	return cmd
}
