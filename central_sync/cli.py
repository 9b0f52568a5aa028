"""STUB (owned by the central work)."""
import click


@click.group()
def main() -> None:
    """AnQi central office."""
