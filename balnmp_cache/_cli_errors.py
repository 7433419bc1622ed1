"""Which failures of a command are the user's to fix, and the one line the CLI prints for each.

A :class:`~balnmp_cache.errors.BalnmpError` is its message; an ``OSError`` (a full, read-only,
forbidden or vanished disk) is :func:`balnmp_cache.fsio.describe_os_error`; a ``RuntimeError`` is
one only when it wraps an ``OSError`` or is torch's own report of a failed file write
(``torch.save`` on a full disk). An ``OSError`` without a path raised while handling another error
(a log file's last flush on the same full disk) gives way to that first error. Anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import re

from balnmp_cache.errors import BalnmpError
from balnmp_cache.fsio import describe_os_error

__all__ = ["user_message"]

_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
# torch.save to a path reports a failed write as a RuntimeError from its C++ zip writer
_TORCH_WRITE = re.compile(r"PytorchStreamWriter failed|inline_container\.cc|file write failed|unexpected pos")


def _os_cause(err: BaseException) -> OSError | None:
    """The first ``OSError`` in ``err``'s chain of causes and contexts."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def user_message(err: BaseException) -> str | None:
    """The one line to print for ``err``, or ``None`` when it is a bug (let it raise with its traceback)."""
    if isinstance(err, BalnmpError):
        return str(err)
    if isinstance(err, OSError) and err.filename is None and err.__context__ is not None:
        # raised while cleaning up after another error (the log file's last flush on a full disk): that
        # first error is what happened, and it names the path
        first = user_message(err.__context__)
        if first is not None:
            return first
    if isinstance(err, OSError):
        return describe_os_error(err, action="write" if err.errno in _WRITE_ERRNOS else "use")
    if isinstance(err, RuntimeError):
        cause = _os_cause(err)
        if cause is not None:
            return user_message(cause)
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        if _TORCH_WRITE.search(first):
            return (f"cannot write a file ({first}): the disk is probably full or not writable; free space there "
                    "or write to another folder")
    return None
