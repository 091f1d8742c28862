"""Writing outputs safely: a unique temporary name renamed into place, and the output path checked
before any work is spent on it.

    with atomic_path("models/x.safetensors") as tmp:   # .x.safetensors.k3j2_a1b.tmp beside it
        save_file(tensors, tmp)                        # renamed to models/x.safetensors on success,
                                                       # removed if the block raises
    check_output("models/x.safetensors")               # InputError in one line if it cannot be written

Temporary names are unique per write (two runs on one output never share one) and hidden; the
final file gets the usual permissions (0666 less the umask), not mkstemp's 0600.
"""
import os
import resource
import shutil
import tempfile
from contextlib import contextmanager, suppress

from .errors import InputError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path, ext=""):
    """A unique temporary path beside `path` (.NAME.XXXXXXXX.tmp[ext]; its folder is created); renamed
    to `path` when the block ends, removed when it raises (a KeyboardInterrupt included)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path)[:80] + ".", suffix=".tmp" + ext)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.remove(tmp)
        raise


@contextmanager
def atomic_folder(path):
    """A unique temporary folder beside `path` (.NAME.XXXXXXXX.tmp) to fill; when the block ends it
    takes the place of `path` (an earlier folder there is moved aside under a unique .NAME.XXXXXXXX.old
    name, then removed); when the block raises, the temporary is removed and `path` is untouched. A
    kill -9 leaves the old folder in place (or, between the two renames, aside), and the next
    OutputLock(path, folder=True) tidies up."""
    path = os.path.abspath(path.rstrip("/"))
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{name[:80]}.", suffix=".tmp")
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)
        old = None
        if os.path.lexists(path):
            old = tempfile.mkdtemp(dir=parent, prefix=f".{name[:80]}.", suffix=".old")
            os.rmdir(old)
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old:
        shutil.rmtree(old, ignore_errors=True)


def check_room(path, total, largest, what=""):
    """InputError in one line, before any work, when writing `total` bytes beside `path` (`what`:
    e.g. " (erasure file and checkpoints)"), the largest file `largest` bytes, would not fit: the free
    disk space there, or this process's file-size limit (ulimit -f)."""
    folder = _existing_ancestor(os.path.dirname(os.path.abspath(path)))
    free = shutil.disk_usage(folder).free
    if free < total:
        raise InputError(f"{folder} has {free / 2**20:.0f} MiB free and this run writes up to {total / 2**20:.0f} "
                         f"MiB{what}; free some space or pass another --output")
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and limit < largest + 2**16:
        raise InputError(f"this process may write files of {limit / 2**20:.1f} MiB at most (ulimit -f) and this run "
                         f"writes one of {largest / 2**20:.1f} MiB; raise the limit (ulimit -f unlimited)")


def check_new(path, overwrite, flag="--output"):
    """InputError in one line when `path` (a finished output) exists and `overwrite` is not set: a
    finished result is never replaced without being asked."""
    if os.path.lexists(path) and not overwrite:
        raise InputError(f"{flag} {path} already exists; pass --overwrite to replace it, or another {flag}")


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


HELD = []   # the OutputLocks this process holds; cli.reports_errors releases them when a script's main ends


def release_locks():
    while HELD:
        HELD.pop().release()


class OutputLock:
    """An exclusive lock on one output path for the life of a run: a second run on the same output
    gets InputError in one line instead of adopting the first run's live checkpoint. The lock is a
    hidden file beside the output (.NAME.lock), held with flock, so it dies with its process (even
    kill -9); `release()` removes it. Temporaries a killed run left beside the output are removed
    once the lock is held (no other run can be writing them). Scripts release it when main ends, by
    any path (cli.reports_errors); the trainer when the erasure file is written. With folder=True
    (`path` is an output folder, e.g. a pipeline export) atomic_folder's temporaries are tidied too,
    and a folder a killed run had moved aside is put back."""

    def __init__(self, path, folder=False):
        import fcntl
        self.path = os.path.abspath(path.rstrip("/"))
        folder_of, name = os.path.split(self.path)
        os.makedirs(folder_of, exist_ok=True)
        self.lock_path = os.path.join(folder_of, f".{name}.lock")
        while True:
            self.fd = os.open(self.lock_path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self.fd)
                raise InputError(f"another run is writing {path} (it holds {self.lock_path}); wait for it to "
                                 "finish, or pass another --output") from None
            try:                                   # the file we locked may have been removed by a finishing run
                if os.stat(self.lock_path).st_ino == os.fstat(self.fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(self.fd)
        HELD.append(self)
        stem = name.removesuffix(".safetensors")
        own = tuple(f".{stem}.{kind}." for kind in ("safetensors", "state.safetensors", "json", "prompts.csv",
                                                    "loss.png"))
        own += (f".{stem}.export.json.",) + ((f".{name[:80]}.",) if folder else ())
        if folder and not os.path.lexists(self.path):     # killed between atomic_folder's two renames
            aside = sorted(x for x in os.listdir(folder_of) if x.startswith(f".{name[:80]}.") and x.endswith(".old"))
            if aside:
                os.replace(os.path.join(folder_of, aside[-1]), self.path)
        for left in os.listdir(folder_of):
            if left.startswith(own) and left.endswith((".tmp", ".tmp.png", ".old")):
                left = os.path.join(folder_of, left)
                if os.path.isdir(left) and not os.path.islink(left):
                    shutil.rmtree(left, ignore_errors=True)
                else:
                    with suppress(OSError):
                        os.remove(left)

    def release(self):
        """Remove the lock file and let go (again: nothing)."""
        if self.fd is not None:
            with suppress(OSError):
                os.remove(self.lock_path)
            os.close(self.fd)
            self.fd = None
