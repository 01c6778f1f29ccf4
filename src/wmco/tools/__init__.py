"""Tools a person runs from a workstation with their own kubeconfig: preflight, host logs, gather.

They are not part of the operator's reconcile loops and need none of its RBAC; each reads what
the user may read (Nodes, Events, the ``cloud-private-key`` Secret) and talks to hosts over the
same SSH layer (:mod:`wmco.windows.ssh`) the operator uses.
"""
