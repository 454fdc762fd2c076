"""`python -m trdcli` runs the `trd` command."""

from trdcli.cli import main

main()
