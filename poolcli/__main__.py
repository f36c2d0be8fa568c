"""``python -m poolcli`` works as ``poolcli``."""

from poolcli.cli import run

if __name__ == "__main__":
    run()
