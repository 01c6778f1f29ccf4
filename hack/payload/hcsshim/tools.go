//go:build tools

// Package tools pins the commands built from this module so `go mod tidy` keeps their
// dependencies.
package tools

import (
	_ "github.com/Microsoft/hcsshim/cmd/containerd-shim-runhcs-v1"
)
