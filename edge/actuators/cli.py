"""STUB (owned by the persuasion work): test-speaker / test-lights."""
import click


@click.command("test-speaker")
def test_speaker() -> None:
    """Play a prompt."""
    raise click.ClickException("not built yet")


@click.command("test-lights")
def test_lights() -> None:
    """Switch lights."""
    raise click.ClickException("not built yet")
