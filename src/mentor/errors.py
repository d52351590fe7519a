"""The exceptions a user of mentor should ever see for bad input.

A `MentorError` carries a message that names the problem and the fix; library callers can
catch it. The CLI prints it without a traceback and exits with status 1: the command was
well formed but the run failed (data, files, network, training). A `UsageError` is the
command line or the config itself being wrong, found before any work; the CLI exits 2, as
argparse does for its own errors, so scripts can tell "fix the command" from "the run
failed".
"""


class MentorError(Exception):
    """Bad input or environment: the message says what is wrong and what to do."""


class UsageError(MentorError):
    """The command line or the config is wrong (a key, a value, a name, a flag)."""
