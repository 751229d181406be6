"""`python -m clinotel.cli` runs the `clinotel` command."""

from clinotel.cli import main

main()
