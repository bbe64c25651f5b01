"""Output folders: checking, before any work starts, that a run can write one, and replacing one atomically.

Every command that writes a folder (`c2c train`, `c2c eval`, `c2c demo`, `c2c convert`,
`save_pretrained`) asks `output_dir_problem` first, so a folder that is a file, sits inside a file or
cannot be written is reported up front instead of after minutes of work.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def output_dir_problem(path: str | Path) -> str | None:
    """Why `path` cannot be used as an output folder, or None when it can.

    The folder need not exist: its nearest existing ancestor must be a folder this process can
    create entries in. Writability is probed by creating (and removing) an empty temporary folder
    there, since permission bits do not tell (root ignores them; read-only mounts and pseudo file
    systems refuse anyway). Nothing is left behind.

    Returns:
        A sentence fragment naming the path and the problem (callers add the field and the fix).
    """
    target = Path(path).expanduser()
    existing = target
    try:
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
    except OSError as err:  # e.g. a parent folder that cannot be searched
        return f"{str(target)!r} cannot be checked ({err.strerror})"
    if not existing.is_dir():
        if existing == target:
            return f"{str(target)!r} is a file, not a folder"
        return f"{str(target)!r} is inside {str(existing)!r}, which is a file"
    try:
        probe = tempfile.mkdtemp(prefix=".c2c-write-check-", dir=existing)
    except OSError as err:
        return f"{str(target)!r} cannot be written: {str(existing)!r} refuses new files ({err.strerror})"
    os.rmdir(probe)
    return None


def replace_dir(staged: Path, target: Path) -> None:
    """Move the finished folder `staged` to `target`, replacing an old `target`.

    Both must be on one filesystem. The old folder is renamed aside before the new one is renamed in,
    so `target` is at every moment either the complete old folder or the complete new one.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / target.name)
    os.replace(staged, target)
    if old is not None:
        shutil.rmtree(old)
