"""Small files of a learning run, written atomically: a killed loop leaves the old file whole or
the new one, never half of one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_atomically(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed over it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: str | Path, data: Any) -> None:
    """``data`` as indented JSON, atomically."""
    write_atomically(path, json.dumps(data, indent=1))


def read_json(path: str | Path, missing: Any = None) -> Any:
    """The JSON in ``path``, or ``missing`` when there is no such file."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else missing
