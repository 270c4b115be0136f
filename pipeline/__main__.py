"""`python -m panst3r_splat.pipeline` is the `panst3r-splat` command."""

from panst3r_splat.pipeline.frontends.cli import entrypoint

entrypoint()
