"""mentor: better image classifiers from a teacher, from unlabeled or from shifted data."""

from mentor._backend import choose_backend

choose_backend()

from mentor.errors import MentorError  # noqa: E402

__version__ = "0.1.0"
__all__ = ["MentorError", "__version__"]
