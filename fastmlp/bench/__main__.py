"""``python -m fastmlp.bench ...``: ``fastmlp bench`` with the same options and exit codes."""

import sys

from .._cli_options import EXIT_ERROR, EXIT_USAGE, Parser, UsageError
from . import add_parser, run


def main(argv=None):
    parser = Parser(prog="fastmlp")
    add_parser(parser.add_subparsers(dest="command", parser_class=Parser))
    try:
        return run(parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)]))
    except UsageError as error:
        print(f"fastmlp: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, TypeError, OSError, ArithmeticError, RuntimeError) as error:
        print(f"fastmlp: error: {error}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
