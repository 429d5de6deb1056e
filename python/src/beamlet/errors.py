"""beamlet's errors as Python exceptions.

Every failing call into libbeamlet returns a status code and leaves a one-line message (which
file, which record, which field and why); the wrapper raises the matching class below with that
message. Each class also derives from the built-in exception a Python caller would expect
(a bad argument is a ValueError, an unsupported request a NotImplementedError), so
``except ValueError`` works as well as ``except beamlet.BeamletError``.
"""


class BeamletError(RuntimeError):
    """A failure reported by libbeamlet; ``status`` is its bl_status code."""

    status = 8
    status_name = "internal error"

    def __init__(self, message, status=None):
        super().__init__(message)
        if status is not None:
            self.status = status

    def __reduce__(self):
        # Beam pickles exceptions into dead-letter outputs and across worker processes.
        return (type(self), (str(self), self.status))


class InvalidArgumentError(BeamletError, ValueError):
    status, status_name = 1, "invalid argument"


class OutOfMemoryError(BeamletError, MemoryError):
    status, status_name = 2, "out of memory"


class BeamletIOError(BeamletError):
    """open/read/write/rename failed (not an OSError: beamlet's message has no errno)."""

    status, status_name = 3, "I/O error"


class FormatError(BeamletError, ValueError):
    status, status_name = 4, "format error"


class UnsupportedError(BeamletError, NotImplementedError):
    status, status_name = 5, "unsupported"


class NotFoundError(BeamletError, LookupError):
    status, status_name = 6, "not found"


class DeviceError(BeamletError):
    status, status_name = 7, "device error"


class InternalError(BeamletError):
    status, status_name = 8, "internal error"


class AbiMismatchError(ImportError):
    """The libbeamlet.so found speaks another version of the C ABI than this package."""


BY_STATUS = {cls.status: cls for cls in (InvalidArgumentError, OutOfMemoryError, BeamletIOError, FormatError,
                                         UnsupportedError, NotFoundError, DeviceError, InternalError)}


def from_status(status, message):
    """The exception for a bl_status code and its message."""
    cls = BY_STATUS.get(status, BeamletError)
    return cls(message or f"libbeamlet failed with status {status}", status)
