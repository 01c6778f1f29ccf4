"""A small controller runtime in the style of controller-runtime, on asyncio.

* :mod:`wmco.runtime.informer`: list + watch one kind into a store; relist-and-diff on 410.
* :mod:`wmco.runtime.queue`: de-duplicating, per-key serialising, rate-limited work queue.
* :mod:`wmco.runtime.controller`: ``reconcile(key) -> Result`` fed by watches and predicates.
* :mod:`wmco.runtime.leader`: Lease-based leader election (client-go semantics).
* :mod:`wmco.runtime.manager`: owns all of the above plus ``/healthz``, ``/readyz``, ``/metrics``.
* :mod:`wmco.runtime.metrics`: the runtime's Prometheus metrics in a registry of their own.
* :mod:`wmco.runtime.keys`: ``namespace/name`` object keys.

All Kubernetes access goes through :mod:`wmco.kube`.
"""
