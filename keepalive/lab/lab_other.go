//go:build !linux

package lab

import (
	"context"
	"errors"
)

var errNotLinux = errors.New("lab: network namespaces and nftables need Linux")

// UserspaceNotice is printed when the lab runs without namespaces.
const UserspaceNotice = "the keepalive lab needs Linux"

// Run needs Linux.
func Run(ctx context.Context, scenarios []Scenario, o Options) (*Report, error) {
	return nil, errNotLinux
}

// Privileged is false off Linux.
func Privileged() (bool, string) { return false, "not Linux" }

// Leftover is a lab namespace found in /run/netns.
type Leftover struct {
	Name  string `json:"name"`
	PID   int    `json:"pid"`
	Alive bool   `json:"alive"`
}

// Leftovers finds nothing off Linux.
func Leftovers() ([]Leftover, error) { return nil, nil }

// Cleanup has nothing to do off Linux.
func Cleanup() ([]string, error) { return nil, nil }
