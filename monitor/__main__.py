"""``python -m monitor`` is ``wirewatch``."""

from monitor.cli import main

main()
