"""Allow `python -m invctl`."""

from invctl.main import main

main()
