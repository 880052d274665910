"""Launch the avvos web demo: the same app and options as ``avvos web``.

    python demo/web_app.py                      # http://127.0.0.1:7860, this machine only
    python demo/web_app.py --models checkpoints/ --size 240 --max-streams 2

See docs/web.md for the options and the safety notes.
"""

from __future__ import annotations

import argparse
import sys

from avvos.errors import AvvosError
from avvos.web import DESCRIPTION, add_arguments, run


def main(argv: list[str] | None = None) -> int:
    """Parse the ``avvos web`` options and serve until interrupted; errors end with status 2."""
    parser = argparse.ArgumentParser(prog="web_app.py", description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        run(args)
    except (AvvosError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
