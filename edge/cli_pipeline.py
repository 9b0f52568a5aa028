"""STUB (owned by the pipeline work): run / replay / calibrate commands."""
import click


@click.command()
def run() -> None:
    """Run the daemon."""
    raise click.ClickException("not built yet")


@click.command()
def replay() -> None:
    """Replay a video."""
    raise click.ClickException("not built yet")


@click.command()
def calibrate() -> None:
    """Calibrate the zone."""
    raise click.ClickException("not built yet")
