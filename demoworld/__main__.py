"""``python -m demoworld [--seed N] {identities,world}``: print the demo world as JSON."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from demoworld.world import DEFAULT_SEED, build_identities, build_world


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demoworld", description=__doc__)
    parser.add_argument("what", choices=("identities", "world"), nargs="?", default="identities")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    if args.what == "identities":
        import json

        print(json.dumps([i.to_dict() for i in build_identities()], ensure_ascii=False, indent=2))
    else:
        print(build_world(args.seed).to_json())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
