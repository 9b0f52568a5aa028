"""STUB (owned by the models work): detect-images and models commands."""
import click


@click.command("detect-images")
def detect_images() -> None:
    """Detect heads in images."""
    raise click.ClickException("not built yet")


@click.group()
def models() -> None:
    """Model files."""


@models.command()
def prepare() -> None:
    """Prepare models."""
    click.echo("models prepare: not built yet")
