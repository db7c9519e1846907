"""`python -m faceloom` runs the CLI (also the entry point torchrun uses)."""

from faceloom.cli import main

main()
