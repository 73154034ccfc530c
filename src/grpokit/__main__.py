"""`python -m grpokit ...` runs the command line (also under torchrun / accelerate launch)."""

from grpokit.cli import main

main()
