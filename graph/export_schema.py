"""Write the GraphQL schema (SDL) the code defines: `python -m graph.export_schema PATH`."""

import sys
from pathlib import Path

from graph.schema import build_schema


def schema_sdl() -> str:
    """The schema as SDL text, as committed in graph/schema.graphql."""
    return build_schema().as_str() + "\n"


def main(argv: list[str]) -> int:
    """Write the SDL to the path given (stdout without one)."""
    if not argv:
        sys.stdout.write(schema_sdl())
        return 0
    Path(argv[0]).write_text(schema_sdl(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
