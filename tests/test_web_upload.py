"""UploadLoader against the real safepickle.loads: limits, sync and async paths."""

from __future__ import annotations

import asyncio
import gc
import io
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import safepickle
from safepickle import ForbiddenGlobal, LimitExceeded, MalformedPickle
from safepickle.web import IncompleteBody, UploadLoader, aload_upload, load_upload

VALUES = [None, 7, -(2**80), 2.5, "héllo", b"\x00\x01", [1, [2]], (1, 2), {"a": (1,)}, {1, 2}]


def flood(n: int) -> bytes:
    """A dict whose n int keys all hash to 0, one SETITEM opcode per key:
    quadratic work (seconds for n in the tens of thousands) in few bytes."""
    def long1(v: int) -> bytes:
        raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
        return b"\x8a" + bytes([len(raw)]) + raw

    return b"\x80\x02}" + b"".join(long1(k * (2**61 - 1)) + b"Ns" for k in range(n)) + b"."


async def agen(data: bytes, size: int = 1000):
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_limits_are_only_ever_lowered():
    base = safepickle.load_policy("data-only").runtime().limits
    loader = UploadLoader("data-only", max_bytes=1234, max_seconds=0.5)
    assert (loader.max_bytes, loader.max_seconds) == (1234, 0.5)
    # The narrowed policy is what the VM sees, not only what the reader uses.
    assert loader.policy.runtime().limits.max_input_bytes == 1234
    assert loader.policy.runtime().limits.max_seconds == 0.5
    assert loader.policy.name == "data-only"
    higher = UploadLoader("data-only", max_bytes=base.max_input_bytes * 4, max_seconds=base.max_seconds * 4)
    assert (higher.max_bytes, higher.max_seconds) == (base.max_input_bytes, base.max_seconds)
    # Other limits and the allowlist are untouched.
    assert loader.policy.runtime().limits.max_depth == base.max_depth
    assert loader.policy.effective().allow == safepickle.load_policy("data-only").effective().allow


def test_narrowing_keeps_the_allowlist_of_an_extending_policy():
    numpy_only = safepickle.load_policy("numpy-only")
    loader = UploadLoader(numpy_only, max_bytes=10_000)
    assert loader.policy.effective().allow == numpy_only.effective().allow
    arr = np.arange(12.0).reshape(3, 4)
    assert np.array_equal(loader.loads(pickle.dumps(arr, protocol=5)), arr)


def test_any_limit_can_be_lowered_never_raised():
    base = safepickle.load_policy("numpy-only").runtime().limits
    loader = UploadLoader(
        "numpy-only", max_bytes=5000,
        limits={"max_ops": 100, "max_input_bytes": 4000, "max_depth": base.max_depth * 10},
    )
    got = loader.policy.runtime().limits
    assert (got.max_ops, got.max_input_bytes, got.max_depth) == (100, 4000, base.max_depth)
    assert loader.limits == got and loader.max_bytes == 4000
    with pytest.raises(LimitExceeded) as info:
        loader.loads(pickle.dumps(list(range(200)), protocol=0))  # one APPEND per item
    assert info.value.limit == "max_ops"
    assert loader.loads(pickle.dumps(list(range(20)), protocol=0)) == list(range(20))


@pytest.mark.parametrize(
    "bad",
    [{"max_bytes": 0}, {"max_seconds": 0}, {"buffers": []}, {"limits": {"max_opz": 5}},
     {"limits": {"max_ops": -1}}, {"limits": {"max_ops": True}}],
)
def test_bad_arguments(bad):
    with pytest.raises((ValueError, TypeError)):
        UploadLoader("data-only", **bad)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_sync_load_every_protocol(protocol):
    for value in VALUES:
        data = pickle.dumps(value, protocol=protocol)
        got = load_upload(io.BytesIO(data + b"TRAILING"), "data-only", content_length=len(data))
        assert got == value and type(got) is type(value)


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_async_load_numpy(protocol):
    arrays = {"a": np.arange(10, dtype=np.int16), "b": np.ones((3, 3), dtype=">f8")}
    data = pickle.dumps(arrays, protocol=protocol)
    got = asyncio.run(aload_upload(agen(data), "numpy-only", content_length=str(len(data))))
    want = pickle.loads(data)  # the oracle (NumPy stores byte order only at protocol 5)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key].dtype == value.dtype and np.array_equal(got[key], value)


def test_refusals_propagate_unchanged():
    loader = UploadLoader("numpy-only", max_bytes=100)
    with pytest.raises(ForbiddenGlobal) as info:
        loader.load(io.BytesIO(b"cos\nsystem\n(S'id'\ntR."))
    assert (info.value.module, info.value.name) == ("os", "system")
    with pytest.raises(MalformedPickle):
        loader.load(io.BytesIO(b"\x80\x02]("))
    with pytest.raises(LimitExceeded) as info:
        loader.load(io.BytesIO(b"x" * 101))
    assert info.value.limit == "max_input_bytes"
    with pytest.raises(IncompleteBody):
        loader.load(io.BytesIO(b"\x80\x02N."), content_length=10)


def test_vm_enforces_the_narrowed_size_too():
    # A caller that skips the reader (loads() on bytes it already has) is
    # still held to the endpoint's limit by the VM.
    loader = UploadLoader("data-only", max_bytes=50)
    with pytest.raises(LimitExceeded) as info:
        loader.loads(pickle.dumps("x" * 100))
    assert info.value.limit == "max_input_bytes"


def test_narrowed_time_limit_stops_a_hash_flood():
    loader = UploadLoader("data-only", max_seconds=0.2)
    with pytest.raises(LimitExceeded) as info:
        loader.loads(flood(100_000))
    assert info.value.limit == "max_seconds"


def test_async_load_runs_off_the_loop_and_the_loop_keeps_running():
    executor = ThreadPoolExecutor(1, thread_name_prefix="test-web-load")
    loader = UploadLoader("data-only", max_seconds=1.0, executor=executor)
    seen_threads: list[str] = []
    original = loader.loads

    def spy(data):
        seen_threads.append(threading.current_thread().name)
        return original(data)

    loader.loads = spy  # type: ignore[method-assign]

    async def main() -> tuple[int, BaseException | None]:
        task = asyncio.ensure_future(loader.aload(agen(flood(100_000), 65536)))
        ticks = 0
        while not task.done():
            await asyncio.sleep(0.01)
            ticks += 1
        return ticks, task.exception()

    ticks, exc = asyncio.run(main())
    executor.shutdown()
    assert seen_threads and seen_threads[0].startswith("test-web-load")
    assert isinstance(exc, LimitExceeded) and exc.limit == "max_seconds"
    # The loop went round many times while the flood was being refused.
    assert ticks > 10


def test_gc_is_not_paused_by_default():
    loader = UploadLoader("data-only")
    seen = []

    # Sample the collector's switch from another thread while loads run.
    def watcher(stop: threading.Event) -> None:
        while not stop.is_set():
            seen.append(gc.isenabled())

    stop = threading.Event()
    t = threading.Thread(target=watcher, args=(stop,))
    t.start()
    try:
        for _ in range(20):
            loader.loads(pickle.dumps([[i] for i in range(20_000)], protocol=4))
    finally:
        stop.set()
        t.join()
    assert seen and all(seen)
    assert gc.isenabled()
