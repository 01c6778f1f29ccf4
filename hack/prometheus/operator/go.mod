// Pins the prometheus-operator release whose CustomResourceDefinitions (ServiceMonitor,
// PrometheusRule) the tests install: hack/prometheus/build.sh downloads this module with the Go
// toolchain (checked against go.sum) and copies the CRDs out of its example/ folder. Nothing is
// built from it, so this file has no package and `go mod tidy` must not be run here.
module wmco.invalid/prometheus/operator

go 1.26.0

require github.com/prometheus-operator/prometheus-operator v0.85.0
