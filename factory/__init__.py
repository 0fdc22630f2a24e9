"""The demo-model factory: what builds the embedded demo model in ``resources/models/demo``.

- :mod:`factory.synthetic`: the procedural face renderer, the demo model's domain (its own faces, no
  external data), with exact landmarks, FFHQ alignment and factor labels;
- :mod:`factory.training`: the resumable trainers of the demo generator, attribute predictor, encoder
  and edit directions, and the packaging of their outputs into the bundle;
- :mod:`factory.cli`: the ``python main.py train-demo`` command that runs them.

The factory builds on the engine (networks, checkpoints, inversion); the studio and the engine never
import it. Tests and tools use the renderer for photos from the demo model's domain.
"""
