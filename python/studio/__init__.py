"""Client library for scripts that Studio runs.

``studio.fs_tracker`` returns the experiment key and artifact paths that the
Studio daemon passes to a script. ``studio.model_util`` runs preprocessing and
model inference over collections with threads and queues. Import the
submodules directly; this package imports neither, so that ``fs_tracker``
stays free of optional dependencies such as numpy.
"""

__version__ = "0.1.0"

__all__ = ["fs_tracker", "model_util"]
