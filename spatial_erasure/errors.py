"""The one kind of error a user can fix: bad input (a file, a flag value, a prompt CSV, a mask).

Its message is one line that says what was wrong and what to pass instead; every script reports it
as `error: ...` with exit status 1 and no traceback (`cli.reports_errors`). It is a ValueError, so
library callers that catch ValueError keep working.
"""


class InputError(ValueError):
    """Bad input from the user; the message names the fix."""
