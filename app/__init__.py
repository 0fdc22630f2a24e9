"""Charm Studio's PySide6 GUI. It talks to the engine only through a worker on a background QThread."""
