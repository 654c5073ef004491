"""The one exception type for errors a user can cause."""


class Hep2Error(ValueError):
    """A problem with the user's input or settings.

    The message names the file or value at fault and says what to do; the command line
    prints it without a traceback and exits with status 2. A ``ValueError``, so that code written for
    scikit-learn's estimators (which raise ValueError on bad input) catches it too.
    """


__all__ = ["Hep2Error"]
