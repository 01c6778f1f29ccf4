//go:build tools

// Package tools pins the commands built from this module so `go mod tidy` keeps their
// dependencies.
package tools

import _ "github.com/ovn-kubernetes/ovn-kubernetes/go-controller/hybrid-overlay/cmd/hybrid-overlay-node"
