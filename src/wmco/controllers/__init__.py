"""Controllers: one reconciler per concern, each in its own module.

Every module exposes ``setup(manager, settings, recorder) -> Controller``: it asks the manager for
the (shared) informers it needs, registers its controller and watches, and returns the
controller. Decisions are pure functions next to the thin async shells that carry them out.

* :mod:`wmco.controllers.userdata`: the private-key Secret -> the user-data Secret (key rotation).
* :mod:`wmco.controllers.csr`: strict approval of the kubelet CSRs of the hosts the operator set up.
"""
