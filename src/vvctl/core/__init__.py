"""The shared core library every subcommand uses. Nothing here imports typer or rich."""
