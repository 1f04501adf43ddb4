"""Where data and models come from: the Hugging Face Hub, a local mirror of it, or a local file.

Set `HUB_MIRROR` to a directory laid out like the Hub (`datasets/<owner>/<name>/<split>.parquet`,
`models/<owner>/<name>/`), and every Hub id found there is read from disk. Ids absent from the
mirror go to the Hub, unless `HF_HUB_OFFLINE=1`, which turns that into a one-line error.
NLTK resources come from `NLTK_DATA`, else `nltk.download` fetches exactly what is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from sentiment.config import UserError
from sentiment.io import noted_read, read_parquet

MIRROR_ENV = "HUB_MIRROR"
LOCAL_SUFFIXES = {".csv": ",", ".tsv": "\t", ".parquet": None}


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}


def mirror_dir() -> Path | None:
    value = os.environ.get(MIRROR_ENV)
    return Path(value) if value else None


def _absent(kind: str, hub_id: str) -> UserError:
    where = f"{MIRROR_ENV}={os.environ.get(MIRROR_ENV)}" if mirror_dir() else f"{MIRROR_ENV} unset"
    return UserError(
        f"{kind} {hub_id!r} is not in the local mirror ({where}) and the Hub cannot be reached"
        f"{' (HF_HUB_OFFLINE=1)' if offline() else ''}"
    )


def resolve(kind: str, hub_id: str) -> str:
    """Map a Hub id of `kind` ('datasets' or 'models') to its mirror directory, else the id."""
    root = mirror_dir()
    if root is not None and (root / kind / hub_id).is_dir():
        return str(root / kind / hub_id)
    if offline():
        raise _absent(kind.rstrip("s"), hub_id)
    return hub_id


def resolve_model(name: str) -> str:
    """A model id or local directory -> something `from_pretrained` can open."""
    if Path(name).is_dir():
        return name
    return resolve("models", name)


def load_pretrained(loader, name: str, **kwargs):
    """Call `loader.from_pretrained` on a resolved id; a miss becomes a one-line error."""
    target = resolve_model(name)
    try:
        return loader.from_pretrained(target, **kwargs)
    except OSError as err:
        if target == name and not Path(name).is_dir():
            raise _absent("model", name) from err
        raise UserError(f"cannot load model {name!r} from {target}: {_first_line(err)}") from err
    except (ValueError, KeyError, ImportError, RuntimeError) as err:  # unknown family, unsupported option, bad weights
        raise UserError(f"cannot load model {name!r} from {target}: {_first_line(err)}") from err


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_source(source: str) -> dict[str, pd.DataFrame]:
    """All splits of a dataset source as DataFrames keyed by split name.

    `source` is a Hub id (read from the mirror when present) or a local .csv/.tsv/.parquet
    file, which is one split named `train`.
    """
    path = Path(source)
    if path.suffix.lower() in LOCAL_SUFFIXES:
        if not path.exists():
            raise UserError(f"dataset file not found: {source}")
        sep = LOCAL_SUFFIXES[path.suffix.lower()]
        noted_read(path)
        frame = pd.read_parquet(path) if sep is None else pd.read_csv(path, sep=sep)
        return {"train": frame}
    target = resolve("datasets", source)
    if target != source:
        files = sorted(Path(target).glob("*.parquet"))
        if not files:
            raise UserError(f"mirror directory {target} holds no <split>.parquet files")
        return {f.stem: read_parquet(f) for f in files}
    import datasets  # only needed online

    try:
        loaded = datasets.load_dataset(source)
    except Exception as err:  # datasets raises many types for a missing or unreachable id
        raise _absent("dataset", source) from err
    return {name: split.to_pandas() for name, split in loaded.items()}


def ensure_nltk(resource: str, package: str) -> None:
    """Make an NLTK resource loadable: found under NLTK_DATA, or downloaded once."""
    import nltk

    try:
        nltk.data.find(resource)
        return
    except LookupError:
        pass
    if not nltk.download(package, quiet=True, raise_on_error=False):
        raise UserError(
            f"NLTK resource {resource!r} not found (NLTK_DATA={os.environ.get('NLTK_DATA', 'unset')})"
            f" and nltk.download({package!r}) failed"
        )
    nltk.data.find(resource)
