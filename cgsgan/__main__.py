"""``python -m cgsgan``: the same as the ``cgsgan`` command."""

from cgsgan.cli import main

if __name__ == "__main__":
    main(prog_name="cgsgan")
