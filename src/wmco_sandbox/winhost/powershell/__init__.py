"""A strict Windows PowerShell 5.1 for the statements the host understands.

``syntax`` (the AST), ``expr`` and ``parser`` (parsing), ``binding`` (parameter binding),
``errors`` and ``values`` (what reaches the streams), ``registry`` and ``cmdlets/`` (the cmdlets),
``session`` (the interpreter).
"""
