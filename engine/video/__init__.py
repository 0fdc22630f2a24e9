"""Video in the engine: faces tracked, edited and pasted back frame by frame, with bounded memory.

Modules:

- ``io``: probing, streaming decode with exact frame indices and timestamps, H.264 mp4 writing with the
  source's audio, atomic output files.
- ``track``: finding and following the face through the frames.
- ``smooth``: temporal smoothing of the per-frame alignment.
- ``edits``: edits that change over time (keyframed slider values).
- ``expand``: the unaligned, expanded field of view around the face.
- ``project``: a video project's state on disk.
- ``pipeline``: the whole run, from a source video to the edited output.
- ``pti``: pivotal tuning on frames of the video.
- ``session``: a clip open in the studio window (preview cache, the stages as jobs, frame previews,
  export), headless.
"""
