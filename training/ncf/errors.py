"""The one exception type that reaches users as a clear, one-line message."""


class NcfError(Exception):
    """A problem caused by the user's input (data, hyperparameters, config).

    Entry points catch it and print `error: <message>` without a traceback, then exit
    with status 2. Anything else that escapes is a bug in this project.
    """
