"""``python -m cosma`` runs the command line."""

from cosma.cli import main

main()
