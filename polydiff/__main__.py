"""``python -m polydiff`` (what ``torchrun -m polydiff`` runs)."""

from polydiff.cli import main

if __name__ == "__main__":
    main()
