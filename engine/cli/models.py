"""``python main.py models list | get NAME... | add FILE... [--name N] | remove NAME``: the model library.

``list`` shows the kits, the known official files (downloaded or not, with sizes) and the installed
bundles; ``get`` downloads kits or known files and builds their bundles; ``add`` builds a bundle from
files on disk; ``remove`` deletes an installed bundle or a downloaded file. See
:mod:`engine.model_store` for how models are named.
"""

from __future__ import annotations

import argparse

COMMAND = "models"
HELP = "List, download, add or remove models (kits of official files, bundles)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="show the kits, known files and installed models")
    get = sub.add_parser("get", help="download kits or known files and build their models")
    get.add_argument("names", nargs="+", metavar="NAME")
    add = sub.add_parser("add", help="build a model from files: a generator and/or encoder, boundary .npy files")
    add.add_argument("files", nargs="+", metavar="FILE")
    add.add_argument("--name", default=None, help="the model's name (default: from the generator's file name)")
    rm = sub.add_parser("remove", help="remove an installed model or a downloaded file")
    rm.add_argument("names", nargs="+", metavar="NAME")


def _list() -> int:
    from engine import model_store as ms
    from engine.download import KNOWN_MODELS, models_dir

    print(f"Model cache: {models_dir()}")
    print("\nKits (python3 main.py models get NAME):")
    installed = {m.name for m in ms.installed_models()}
    for kit in ms.KITS.values():
        state = "installed" if kit.name in installed else ms.describe_size(kit.approx_bytes) + " to download"
        print(f"  {kit.name:<28} {kit.title} [{state}]")
        print(f"  {'':<28} {kit.speed}")
    print("\nKnown files:")
    for m in KNOWN_MODELS.values():
        path = ms.known_file_path(m)
        size = ms.describe_size(path.stat().st_size, approx=False) if path else ms.describe_size(m.approx_bytes)
        state = f"downloaded, {size}" if path else size
        print(f"  {m.name:<28} {m.kind:<9} {m.description} [{state}]")
    print("\nInstalled models (--model NAME):")
    print(f"  {'demo':<28} Charm demo faces, 64 px (built in)")
    for b in ms.installed_models():
        print(f"  {b.name:<28} {b.title} [{ms.describe_size(b.bytes, approx=False)}; from {b.source}]")
    return 0


def run(args: argparse.Namespace) -> int:
    from functools import partial

    from engine import model_store as ms
    from engine.jobs import run_in_terminal

    if args.action == "list":
        return _list()
    if args.action == "get":
        for name in args.names:
            manifest = run_in_terminal(partial(ms.get_model, name))
            print(f"{manifest.parent.name}: ready (use --model {manifest.parent.name})")
        return 0
    if args.action == "add":
        manifest = run_in_terminal(lambda ctl: ms.add_model(args.files, args.name, ctl))
        print(f"added '{manifest.parent.name}' in {manifest.parent} (use --model {manifest.parent.name})")
        return 0
    for name in args.names:
        for p in ms.remove_model(name):
            print(f"removed {p}")
    return 0
