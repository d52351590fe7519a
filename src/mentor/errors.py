"""The one exception a user of mentor should ever see for bad input.

A `MentorError` carries a message that names the problem and the fix. The CLI prints it
without a traceback and exits with status 2; library callers can catch it.
"""


class MentorError(Exception):
    """Bad input or environment: the message says what is wrong and what to do."""
