"""Configure and deconfigure ONE Windows instance (idempotent, resumable sequences of steps).

``configure`` turns an instance into a Ready, labelled node; ``deconfigure`` reverses it. Both
are driven by the controllers and talk to the host only through :mod:`wmco.windows`.
"""
