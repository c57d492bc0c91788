"""The base of errors a user can fix; entry points print them without a traceback."""


class KdodError(Exception):
    """A problem with the user's input, configuration or files; the message says what to do."""
