"""What the operator learns about the cluster it serves: its network profile, its kubelet client CA.

Both are cluster-wide facts read through :mod:`wmco.kube`, decided by pure functions (unit-tested
without an API server) and handed down to the per-host flow; nothing here talks to a host.
"""
