"""``python -m auth ...``: the portal command group without the rest of ``enclave``."""

from ._cli import portal

if __name__ == "__main__":
    portal(prog_name="python -m auth")
