"""`python -m trdcli` runs the `trd` command."""

from trdcli.cli.app import main

main()
