"""``tf-clrp`` command line: demo, explain, evaluate (Pointing Game) and list.

Exit codes: 0 success, 2 usage errors (bad options, unknown methods or classes), 1 runtime
problems (missing or unreadable files, not a Keras model, outputs that exist without
``--force``, a failing analyzer). User errors print one ``tf-clrp: error: ...`` line and no
traceback; ``--debug`` shows tracebacks of unexpected errors.

``--help``, ``--version`` and ``list`` import no TensorFlow. The model commands import it
first, with its C++ log lines hidden unless ``--verbose`` or ``TF_CPP_MIN_LOG_LEVEL`` is set
(``tf_clrp.cli.quiet``). One module per command; ``tf_clrp.cli.common`` holds what they share.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from tf_clrp.cli.common import CliError, UsageError
from tf_clrp.cli.outputs import check_out_folder
from tf_clrp.cli.parser import MODEL_COMMANDS, build_parser
from tf_clrp.cli.quiet import import_tensorflow

__all__ = ["CliError", "UsageError", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``tf-clrp``.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 ok, 1 runtime problem, 2 usage error.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else 2
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        if getattr(args, "out", None) is not None:
            check_out_folder(args.out)  # before any work, for every command writing files
        if args.command in MODEL_COMMANDS:
            import_tensorflow(verbose=args.verbose)
        return int(args.func(args))
    except CliError as error:
        print(f"tf-clrp: error: {error}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        print("tf-clrp: interrupted", file=sys.stderr)
        return 130
    except OSError as error:  # a file problem the command did not word itself
        if args.debug:
            raise
        print(f"tf-clrp: error: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001 - last resort, no traceback unless --debug
        if args.debug:
            raise
        print(
            f"tf-clrp: error: {type(error).__name__}: {error} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
