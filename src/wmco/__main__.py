"""Allow `python -m wmco`."""

from wmco import cli

cli.main()
