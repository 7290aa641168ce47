"""Run folders' atomic writes: a file is whole or as it was, never half written."""

from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from unitscope.dissect.exemplars import _pack, _save_strip
from unitscope.runs import atomic_write_bytes, atomic_writer


def test_atomic_writer_renames_into_place_only_when_the_block_ends_cleanly(tmp_path):
    path = tmp_path / "sub" / "out.bin"
    with atomic_writer(path) as f:
        f.write(b"first")
        assert not path.exists()  # nothing at the path until the block ends
    assert path.read_bytes() == b"first"
    with pytest.raises(RuntimeError, match="midway"), atomic_writer(path, fsync=False) as f:
        f.write(b"half")
        raise RuntimeError("midway")
    assert path.read_bytes() == b"first"  # the old file stays
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.bin"]  # and no temporary file is left
    atomic_write_bytes(path, b"second")
    assert path.read_bytes() == b"second"


def test_a_strip_written_through_the_file_is_the_jpeg_pil_makes_in_memory(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (16, 40, 3), dtype=np.uint8)
    _save_strip(tmp_path, "images/x/unit0000.jpg", _pack(rgb))
    buf = BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=85)
    assert (tmp_path / "images/x/unit0000.jpg").read_bytes() == buf.getvalue()
