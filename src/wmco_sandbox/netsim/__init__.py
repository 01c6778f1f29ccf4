"""The cluster side of node networking in the sandbox.

What a network plugin's control-plane pieces do for Windows nodes, so that the simulated hosts'
agents have something real to wait for: ``ovn`` (OpenShift's OVN-Kubernetes hybrid overlay:
the network operator config and the per-node subnet annotation) and ``hostprocess`` (a CNI that
ships its Windows agent as a HostProcess DaemonSet, as flannel, Calico and Antrea do).
"""
