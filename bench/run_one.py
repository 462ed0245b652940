"""``python -m bench.run_one bench_NAME --out FILE [--quick]``: run one benchmark module in this process.

The harness (``python -m bench``) starts one of these per module and reads the figures from ``--out``.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

from bench.figures import Figure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run_one")
    parser.add_argument("module")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    module = importlib.import_module(f"bench.{args.module}")
    figures = module.run(args.quick)
    if not isinstance(figures, list) or not all(isinstance(f, Figure) for f in figures):
        raise TypeError(f"bench.{args.module}.run must return a list of Figure")
    args.out.write_text(json.dumps([f.to_dict() for f in figures], ensure_ascii=False, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
