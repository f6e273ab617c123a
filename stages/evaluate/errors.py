"""The evaluation stage's one error type: bad input named with the file/option at fault."""


class EvaluationError(ValueError):
    """A benchmark file, option or saved result the evaluation cannot use."""
