//go:build tools

// Package tools pins kube-log-runner so `go mod tidy` keeps its dependencies.
package tools

import _ "k8s.io/component-base/logs/kube-log-runner"
