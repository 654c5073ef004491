"""The one exception type for errors a user can cause."""


class Hep2Error(Exception):
    """A problem with the user's input or settings.

    The message names the file or value at fault and says what to do; the command line
    prints it without a traceback and exits with status 2.
    """


__all__ = ["Hep2Error"]
