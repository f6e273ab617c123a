"""Errors of stage two: each says what is wrong and where, in one line."""


class DistillError(Exception):
    """Base class for every distillation problem a user can fix."""


class DistillConfigError(DistillError):
    """An option is out of range, or a run directory holds a run with other options."""


class TokenizerMismatchError(DistillError):
    """The student's tokenizer maps tokens to other ids than the cache's (teacher's) one."""


class NonFiniteLossError(DistillError):
    """The loss or gradient became NaN/inf; the last good checkpoint is kept."""


class SaveError(DistillError):
    """A checkpoint or the final model could not be written (most often: the disk is full)."""
