"""Headless subcommands of ``python main.py``.

Each module in this package that defines ``COMMAND`` (the subcommand name), ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int`` is picked up by ``main.py``. Modules keep their
top-level imports light (argparse only) and import the engine inside ``run`` so that ``--help`` is
fast.
"""
