"""The one exception type that means "the user gave us something wrong" (exit code 2)."""


class BadInput(Exception):
    """Bad flags, files or plans. The message is one line: what is wrong, then how to fix it."""


EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
