"""Write-then-rename: a killed process never leaves a half-written file or directory.

Everything this package writes that a rerun or a later stage reads goes through
:func:`atomic_output`: the content is written under a temporary name beside its final path
(same filesystem, so the rename is atomic) and renamed into place only once complete.
"""

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union


@contextmanager
def atomic_output(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    The temporary name keeps the final suffix (``.<name>.<pid>.tmp<suffix>``), so writers that
    choose a format by suffix (matplotlib, numpy) behave as for the final path. An existing
    directory at ``path`` is replaced whole. On an exception the temporary file or directory is
    removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp)
        elif tmp.exists() or tmp.is_symlink():
            tmp.unlink()


def atomic_write_text(path: Union[str, Path], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
