"""The one exception type that means "the user gave us something wrong" (exit code 2), and the
one-line form of any exception that such a message quotes."""


class BadInput(Exception):
    """Bad flags, files or plans. The message is one line: what is wrong, then how to fix it."""


EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


def first_line(e: BaseException) -> str:
    """`Type: first line of the message` (or just the type): fits inside a one-line error."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
