"""The deterministic demo world and the stand-in departmental systems (separate processes).

Imports none of the product packages (checked by import-linter): it plays the outside world.
"""

from demoworld.world import (
    DEFAULT_SEED,
    Division,
    Identity,
    Resident,
    World,
    build_identities,
    build_world,
    significant_prefix,
)

__all__ = [
    "DEFAULT_SEED",
    "Division",
    "Identity",
    "Resident",
    "World",
    "build_identities",
    "build_world",
    "significant_prefix",
]
