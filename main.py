"""Charm Studio entry point.

``python main.py`` opens the studio window; ``python main.py <command> ...`` runs a headless command
(see ``python main.py --help``). Commands live in ``engine/cli/`` (and the demo-model factory's in
``factory/cli/``).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from engine.openmp import configure_openmp

configure_openmp()  # before anything imports torch: how its threads wait (see engine/openmp.py)


def _commands() -> dict:
    """Subcommand name -> module, from the studio's commands (engine.cli) and the demo-model factory's
    (factory.cli), each package's modules in name order."""
    found = {}
    for pkg_name in ("engine.cli", "factory.cli"):
        pkg = importlib.import_module(pkg_name)
        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
            if info.name.startswith("_"):
                continue
            mod = importlib.import_module(f"{pkg_name}.{info.name}")
            if hasattr(mod, "COMMAND"):
                found[mod.COMMAND] = mod
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="charm-studio",
        description="Charm Studio: edit faces in photos and videos with StyleGAN3. "
        "With no command, the studio window opens.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, mod in _commands().items():
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        from app.launch import run_app

        return run_app()
    args = build_parser().parse_args(argv)
    if args.command is None:
        from app.launch import run_app

        return run_app()
    from engine.errors import CharmError
    from engine.explain import explain
    from engine.jobs import Cancelled

    try:
        return int(args._module.run(args) or 0)
    except (CharmError, OSError) as e:
        # CharmError messages say what to do; an OSError's gets the hint (e.g. check the folder exists).
        why = explain(e)
        text = why.message if isinstance(e, CharmError) else why.one_line()
        print(f"error: {' '.join(text.split())}", file=sys.stderr)
        return 2
    except Cancelled:
        print("cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
