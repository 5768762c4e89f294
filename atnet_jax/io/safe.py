"""Writing files safely: atomically, in modes under the umask, folders staged and swapped whole, JSON."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from atnet_jax.errors import UsageError


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (``/proc/self/status``), so that
    threads creating files meanwhile are not affected; else set and restored at once."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def output_mode(*, folder: bool = False) -> int:
    """The mode a new output file (``0o666``) or folder (``0o777``) gets under the umask: 0644 / 0755 under 022.

    ``tempfile.mkstemp`` and ``mkdtemp`` create 0600 / 0700 whatever the umask; outputs made from them are
    chmod-ed to this before they are moved into place, so that other users can read results as usual.
    """
    return (0o777 if folder else 0o666) & ~current_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], *, overwrite: bool = False) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path`` and move it into place atomically.

    Without ``overwrite`` an existing ``path`` raises FileExistsError, also when it appears while writing (the
    move is then a hard link, which never replaces). The parent folder is created if needed. The file gets
    the usual mode under the umask (:func:`output_mode`), not ``mkstemp``'s 0600.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, output_mode())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)") from None
            except OSError:  # file systems without hard links: check-then-replace
                if path.exists():
                    raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)") from None
                os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def staging_dir(target: str | os.PathLike) -> Path:
    """A new empty folder beside ``target`` (same file system, so it can be renamed into place), with the
    usual folder mode under the umask; the parent folder is created if needed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, output_mode(folder=True))
    return tmp


def replace_entries(staged: str | os.PathLike, folder: str | os.PathLike, names: Sequence[str]) -> list[Path]:
    """Swap the entries ``names`` of ``folder`` for those in ``staged`` as a whole, and remove ``staged``.

    Every name is first moved out of ``folder`` (whether or not ``staged`` has a new one, so that no result of
    an earlier run is left beside the new ones), then the staged entries are moved in; both are renames on
    one file system. If a move fails, the earlier entries are put back. Returns the paths now in ``folder``.
    """
    staged, folder = Path(staged), Path(folder)
    old = Path(tempfile.mkdtemp(prefix=".replaced.", suffix=".tmp", dir=folder))
    moved_out: list[str] = []
    moved_in: list[str] = []
    try:
        for name in names:
            if (folder / name).exists() or (folder / name).is_symlink():
                os.rename(folder / name, old / name)
                moved_out.append(name)
        for name in names:
            if (staged / name).exists():
                os.rename(staged / name, folder / name)
                moved_in.append(name)
    except BaseException:
        for name in moved_in:
            os.rename(folder / name, staged / name)
        for name in moved_out:
            os.rename(old / name, folder / name)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(staged, ignore_errors=True)
    return [folder / name for name in moved_in]


def replace_dir(staged: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Put the folder ``staged`` (from :func:`staging_dir`) in place of ``target``, which may exist: the old
    folder is renamed aside first and removed only once the new one is in place."""
    staged, target = Path(staged), Path(target)
    if not (target.exists() or target.is_symlink()):
        os.rename(staged, target)
        return target
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    os.rename(target, old / target.name)
    try:
        os.rename(staged, target)
    except BaseException:
        os.rename(old / target.name, target)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
    return target


def write_text(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> Path:
    """Write ``text`` (UTF-8, line ends as given), atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8", newline=""),
                        overwrite=overwrite)


def write_json(path: str | os.PathLike, data: Any, *, overwrite: bool = True, indent: int | None = 2) -> Path:
    """Write ``data`` as JSON (UTF-8, a final newline), atomically."""
    return write_text(path, json.dumps(data, indent=indent) + "\n", overwrite=overwrite)


def check_writable_folder(path: Path, flag: str) -> Path:
    """``path`` if results can be written there: a writable folder, or a path that can be created as one
    (its nearest existing ancestor is a writable folder). Else a :class:`UsageError` naming the flag.

    Run it on every output path before any work, so that a long run never ends in an errno message.
    """
    probe = path
    while not (probe.exists() or probe.is_symlink()) and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        where = "is a file" if probe == path else f"cannot be created: {probe} is a file"
        raise UsageError(f"{flag} {path} {where}, expected a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        where = "is not writable" if probe == path else f"cannot be created: {probe} is not writable"
        raise UsageError(f"{flag} {path} {where}")
    return path
