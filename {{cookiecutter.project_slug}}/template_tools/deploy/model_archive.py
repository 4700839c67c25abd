# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Packs model/ into model.tar.gz in SageMaker's layout: artifacts at the root, code/ beside them.

SageMaker unpacks the archive into /opt/ml/model; framework containers then import
code/inference.py and pip-install code/requirements.txt. The archive is reproducible (sorted
entries, fixed owner and times), so an unchanged model gives the same bytes, the same S3 key and
no new upload.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

from .cli import DeployError

REQUIRED_CODE_FILES = ("code/inference.py", "code/requirements.txt")
SKIPPED_PARTS = {"__pycache__", ".DS_Store", ".ipynb_checkpoints"}


def model_files(model_dir: Path) -> list[str]:
    """The archive's entries, relative to model_dir, in a stable order."""
    files = sorted(
        path.relative_to(model_dir).as_posix()
        for path in model_dir.rglob("*")
        if path.is_file() and not SKIPPED_PARTS & set(path.parts) and path.suffix != ".pyc"
    )
    missing = [name for name in REQUIRED_CODE_FILES if name not in files]
    if missing:
        raise DeployError(f"{model_dir} lacks {', '.join(missing)}: SageMaker's container needs them")
    if not [name for name in files if not name.startswith("code/")]:
        raise DeployError(f"{model_dir} holds no model artifacts beside code/; run `make train` first")
    return files


def build_archive(model_dir: Path, out: Path) -> Path:
    """Write model_dir as a reproducible model.tar.gz at out; return out."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in model_files(model_dir):
            data = (model_dir / name).read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    out.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 keeps the gzip header free of the build time too.
    with out.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as compressed:
        compressed.write(buffer.getvalue())
    return out
