"""``python -m tests.worlds KIND OUT [--seed N]``: write a world directory (KIND: default_like, small_local,
chains, tiny, geonames5k, multiclock, or all)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tests.worlds.build import KINDS, write_world


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.worlds", description=" ".join(__doc__.split()))
    ap.add_argument("kind", choices=(*KINDS, "all"))
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=int, default=1, help="multiply the number of merchants")
    args = ap.parse_args()
    kinds = KINDS if args.kind == "all" else (args.kind,)
    for kind in kinds:
        out = Path(args.out) / kind if args.kind == "all" else Path(args.out)
        print(json.dumps({"kind": kind, "dir": str(out), **write_world(kind, out, args.seed, args.scale)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
