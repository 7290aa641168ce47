"""Sample photos for the probe page: scikit-image's bundled data photos, when it is installed.

from unitscope.serve.samples import sample_names, sample_jpeg
sample_names()           # ["astronaut", "chelsea", "coffee", ...] or [] without scikit-image
sample_jpeg("chelsea")   # JPEG bytes
"""

from __future__ import annotations

import io
from functools import lru_cache

# scikit-image functions whose photos ship inside its wheel (no download); colour first.
SAMPLES = ("chelsea", "coffee", "astronaut", "rocket", "camera")


@lru_cache(maxsize=1)
def sample_names() -> list[str]:
    """Names of the sample photos this installation can serve."""
    try:
        from skimage import data
    except ImportError:
        return []
    return [name for name in SAMPLES if callable(getattr(data, name, None))]


@lru_cache(maxsize=8)
def sample_jpeg(name: str) -> bytes:
    """The sample photo ``name`` as JPEG bytes (KeyError for an unknown name)."""
    from PIL import Image
    from skimage import data

    if name not in sample_names():
        raise KeyError(f"no sample photo {name!r}; samples: {', '.join(sample_names())}")
    buf = io.BytesIO()
    Image.fromarray(getattr(data, name)()).convert("RGB").save(buf, "JPEG", quality=92)
    return buf.getvalue()
