"""``python -m cosma`` runs the command line."""

from cosma.app.cli import main

main()
