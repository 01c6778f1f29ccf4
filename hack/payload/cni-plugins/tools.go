//go:build tools

// Package tools pins the commands built from this module so `go mod tidy` keeps their
// dependencies.
package tools

import (
	_ "github.com/containernetworking/plugins/plugins/main/windows/win-overlay"
	_ "github.com/containernetworking/plugins/plugins/main/windows/win-bridge"
	_ "github.com/containernetworking/plugins/plugins/ipam/host-local"
)
