"""wmco_sandbox: a whole cluster on one machine for demos, tests and benchmarks.

A real Kubernetes control plane built from the Go modules, a simulated Machine API, and simulated
Windows Server hosts that speak real SSH and join the real cluster. The operator never imports it.
"""
