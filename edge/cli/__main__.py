"""``python -m edge.cli``: the same command line as ``anqi-edge``."""

from edge.cli import main

if __name__ == "__main__":
    main()
