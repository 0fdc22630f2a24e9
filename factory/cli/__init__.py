"""Headless subcommands of ``python main.py`` that build the demo model (``train-demo``).

Picked up by ``main.py`` like those of :mod:`engine.cli`: a module that defines ``COMMAND``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``, with light top-level imports so that ``--help`` is
fast.
"""
