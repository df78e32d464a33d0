"""The ground floor every module may import: the one error type a user can act on."""


class PipelineError(Exception):
    """A problem the user can fix: the message names the file and what is wrong."""
