"""Entry point: `.venv/bin/python bench/run.py [--quick]` (see docs/benchmarks.md)."""

import sys
from pathlib import Path

if __name__ == "__main__":
    # Run as a script, so make the repository root importable for the `bench` package.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.main import main

    raise SystemExit(main())
