"""Writing outputs safely: a unique temporary name renamed into place, and the output path checked
before any work is spent on it.

    with atomic_path("models/x.safetensors") as tmp:   # .x.safetensors.k3j2_a.tmp beside it
        save_file(tensors, tmp)                        # renamed to models/x.safetensors on success,
                                                       # removed if the block raises
    check_output("models/x.safetensors")               # InputError in one line if it cannot be written

Temporary names are unique per write (two runs on one output never share one) and hidden; the
final file gets the usual permissions (0666 less the umask), not mkstemp's 0600.
"""
import os
import tempfile
from contextlib import contextmanager, suppress

from .errors import InputError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path, suffix=".tmp"):
    """A unique temporary path beside `path` (its folder is created); renamed to `path` when the
    block ends, removed when it raises (a KeyboardInterrupt included)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path)[:80] + ".", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.remove(tmp)
        raise


def _existing_ancestor(path):
    """The nearest part of `path` that exists (the path itself, or a folder above it)."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_output(path, flag="--output", folder=False):
    """InputError in one line, before any work, if `path` (a file to write; with folder=True, a
    folder to create or fill) could not be written: a name too long for the file system, a file
    where a folder must be, a folder where the file must be, or no permission to write there.
    Creates nothing."""
    path = os.path.abspath(path)
    limit = 255
    anchor = _existing_ancestor(path)
    with suppress(OSError, ValueError):
        limit = os.pathconf(anchor if os.path.isdir(anchor) else os.path.dirname(anchor), "PC_NAME_MAX")
    long = [part for part in path.split(os.sep) if len(part.encode()) > limit]
    if long:
        raise InputError(f"{flag}: the name {long[0][:40]}... is {len(long[0].encode())} bytes, more than the "
                         f"file system's {limit}; pass a shorter {flag} (a .safetensors path names the file itself)")
    if anchor != path and not os.path.isdir(anchor):
        raise InputError(f"{flag} {path}: {anchor} is a file, not a folder; pass a path in a folder")
    if anchor == path and os.path.isdir(path) and not folder:
        raise InputError(f"{flag} {path} is a folder; pass the file's path (ending in its name)")
    if anchor == path and not os.path.isdir(path) and folder:
        raise InputError(f"{flag} {path} is a file, not a folder; pass a folder")
    probe = anchor if os.path.isdir(anchor) else os.path.dirname(anchor)
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".write-check.")
    except OSError as e:
        raise InputError(f"{flag} {path}: cannot write in {probe} ({e.strerror}); pass a path in a folder you can "
                         "write") from None
    os.close(fd)
    os.remove(tmp)
