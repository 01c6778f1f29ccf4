"""The simulated containerd: its configuration, its CRI (status, pod sandboxes) and CNI loading."""
