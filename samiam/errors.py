"""Named errors a user can act on.

Every failure that bad input or a missing resource can cause is one of these. The CLI prints
``str(error)`` without a traceback; the service maps each class to an HTTP status
(:attr:`SamiamError.http_status`).
"""


def shown(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: an untrusted value quoted in an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


class SamiamError(Exception):
    """Base class of every error samiam raises on purpose."""

    http_status = 500


class ImageError(SamiamError):
    """The image cannot be used: unreadable, corrupt, empty, constant, too large, bad channels."""

    http_status = 422


class ImageNotFoundError(ImageError):
    http_status = 404


class ImageTooLargeError(ImageError):
    http_status = 413


class UnsupportedImageError(ImageError):
    """Readable, but of a kind samiam does not segment (bit depth, channel count, zero size)."""


class ConstantImageError(ImageError):
    """Every pixel has the same value: there is nothing to segment."""


class ImageSizeMismatchError(ImageError):
    """A task's full-range original decodes to another size than the image annotators see, so
    masks made on it would not match that image pixel for pixel."""


class NoImageSignalError(UnsupportedImageError):
    """A microscope file holds no 2-D image signal (only spectra, spectrum images or 4-D data)."""


class FormatSupportMissingError(UnsupportedImageError):
    """Reading this file format needs an optional extra that is not installed (``samiam[formats]``)."""

    http_status = 501


class SamSupportMissingError(SamiamError):
    """SAM or a torch embedder was asked for, but the optional extra ``samiam[sam]`` (torch,
    torchvision, segment-anything) is not installed."""

    http_status = 501


class CheckpointError(SamiamError):
    """A model checkpoint is missing, corrupt, or of the wrong model type."""

    http_status = 503


class MaskSetError(SamiamError):
    """Proposal masks given by the caller have the wrong shape, dtype or size."""

    http_status = 422


class SettingsError(SamiamError):
    """A setting has an unknown name or a value out of range."""

    http_status = 400


class LabelConfigError(SamiamError):
    """The Label Studio labeling config has no BrushLabels bound to an Image."""

    http_status = 400


class ImageFetchError(SamiamError):
    """A task's image could not be fetched: refused host or path, unreachable, too large, not an image."""

    http_status = 422


class LabelStudioError(SamiamError):
    """A Label Studio API call (create a project, import tasks, connect the backend) failed."""

    http_status = 502


class QueueUnavailableError(SamiamError):
    """Redis (the job queue) cannot be reached."""

    http_status = 503


class WriteBackError(SamiamError):
    """A prediction could not be written back to Label Studio (unreachable, refused, bad token)."""

    http_status = 502


class RequestError(SamiamError):
    """An HTTP request to the service is malformed (not JSON, missing or mistyped fields)."""

    http_status = 400


class AnnotationError(SamiamError):
    """A Label Studio annotation cannot be read as material masks: bad RLE, wrong size, unknown label."""

    http_status = 422


class PrototypeError(SamiamError):
    """Stored label prototypes are malformed or were made with another texture embedder."""

    http_status = 422
class RequestTooLargeError(RequestError):
    """A request to the service is larger than the service accepts (body size, tasks)."""

    http_status = 413


class SetupRefusedError(RequestError):
    """``/setup`` asked for something an unauthenticated caller may not change (where Label
    Studio is)."""

    http_status = 403


class PromptError(SamiamError):
    """An interactive prompt (clicks, box) is malformed, outside the image, or cannot be answered."""

    http_status = 400


class ClickTimeoutError(SamiamError):
    """No worker answered an interactive click in time (``SAMIAM_CLICK_DEADLINE_S``)."""

    http_status = 504
