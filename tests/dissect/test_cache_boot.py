"""The caches' row records without fsync: trusted in the boot that wrote them, synced where they must
outlive it (a kept cache, ranks on several machines)."""

import numpy as np
import pytest

from unitscope.dissect import cache as cache_mod
from unitscope.dissect.cache import ActivationCache, open_activation_cache


@pytest.fixture
def boot(tmp_path, monkeypatch):
    """Set this machine's boot id (``boot("b")``) and record the names of the files synced (``boot.syncs``)."""
    path = tmp_path / "boot_id"
    monkeypatch.setattr(cache_mod, "_BOOT_ID", path)
    real_fsync = cache_mod.os.fsync
    calls = []

    def counting_fsync(fd):
        calls.append(cache_mod.os.readlink(f"/proc/self/fd/{fd}").rsplit("/", 1)[-1])
        real_fsync(fd)

    monkeypatch.setattr(cache_mod.os, "fsync", counting_fsync)

    def set_boot(value: str) -> None:
        path.write_text(value + "\n")

    set_boot.syncs = calls
    set_boot("boot-1")
    return set_boot


def filled(folder, durable: bool) -> ActivationCache:
    c = ActivationCache(folder, {"l": (2, 1, 1)}, 4, {"model": "m"})
    c.write("l", np.arange(4), np.arange(8, dtype=np.float32).reshape(4, 2, 1, 1))
    assert c.mark_complete(durable=durable)
    c.close()
    return c


def reopened(folder) -> ActivationCache:
    return ActivationCache(folder, {"l": (2, 1, 1)}, 4, {"model": "m"})


def test_rows_of_this_boot_are_trusted_without_fsync_and_dropped_after_a_reboot(tmp_path, boot):
    folder = tmp_path / "cache"
    filled(folder, durable=False)
    assert "l0.f32" not in boot.syncs  # the layer's rows were never synced (the small records are)
    same = reopened(folder)
    assert same.complete and (same.rows == ActivationCache.WRITTEN).all()
    np.testing.assert_array_equal(same.read("l", np.arange(4)).ravel(), np.arange(8))
    boot("boot-2")  # the machine crashed and came back: pages not written back may be lost
    after = reopened(folder)
    assert not after.complete and (after.rows == 0).all()
    with pytest.raises(FileNotFoundError, match="no complete activation cache"):
        open_activation_cache(tmp_path, "l")


def test_a_durable_cache_is_synced_and_trusted_in_any_boot(tmp_path, boot):
    folder = tmp_path / "cache"
    filled(folder, durable=True)
    assert "l0.f32" in boot.syncs  # the layer's rows synced before their record
    boot("boot-2")
    after = reopened(folder)
    assert after.complete and (after.rows == ActivationCache.WRITTEN).all()
    np.testing.assert_array_equal(open_activation_cache(tmp_path, "l").read(range(4)).numpy().ravel(), np.arange(8))


def test_without_a_boot_id_every_record_is_synced(tmp_path, boot, monkeypatch):
    monkeypatch.setattr(cache_mod, "_BOOT_ID", tmp_path / "missing")
    filled(tmp_path / "cache", durable=False)
    assert "l0.f32" in boot.syncs
    assert reopened(tmp_path / "cache").complete


def test_a_kept_cache_outlives_the_boot(tmp_path, boot):
    from tests.dissect.test_label_cache import run

    run(tmp_path, "kept", 1.0, keep_cache=True)
    boot("boot-2")
    assert open_activation_cache(tmp_path / "kept", "feat").read(range(2)).shape[0] == 2
    assert (tmp_path / "kept" / "cache" / "labels" / "complete").read_text().find("boot") < 0
