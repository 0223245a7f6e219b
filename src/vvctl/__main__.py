"""`python -m vvctl` runs the same entry point as the `vvctl` console script."""

from vvctl.cli.app import main

if __name__ == "__main__":
    main()
