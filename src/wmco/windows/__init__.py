"""The Windows host as seen over SSH.

``quoting`` and ``commands`` build every command string (the contract in
``docs/windows-surface.md``) and parse every answer; ``services`` declares the Windows services of a
node and plans the sc.exe steps that reconcile them; ``ssh`` is the connection (host-key pinning,
retries, timeouts, commands), with ``sshkeys`` (the pinned host key, the private key loaded),
``sftp`` (uploads over the connection's SFTP session), ``sshfailures`` (the SSH layer's errors)
and ``ssherrors`` (their kinds for the metric); ``transfer`` copies files only when their hash
differs.

This package imports only :mod:`wmco.names` and :mod:`wmco.settings` from the rest of the operator.
"""
