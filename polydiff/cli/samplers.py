"""`polydiff samplers`: every sampler the core provides."""

from __future__ import annotations

from rich.table import Table

from polydiff.cli.common import console


def samplers_command() -> None:
    """List the samplers usable with `polydiff sample --sampler NAME`."""
    from polydiff.sampling import SAMPLERS

    table = Table("name", "kind", "default grid", "algorithm", box=None)
    for name in sorted(SAMPLERS):
        spec = SAMPLERS[name]
        kind = "stochastic" if spec.stochastic else "deterministic"
        table.add_row(name, kind, spec.default_schedule, spec.description)
    console.print(table)
