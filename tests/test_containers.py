"""Containers: PyTorch zip and legacy checkpoints, NumPy npy/npz, joblib,
compressed and nested files, bad zips, mislabelled names, bombs."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
import zipfile
import zlib

import pytest

from safepickle.policy import Policy
from safepickle.scan import scan

TORCH_POLICY = Policy.model_validate({
    "name": "torch-test", "extends": ["data-only"], "persistent_ids": True,
    "allow": ["torch._utils:_rebuild_tensor_v2", "torch:FloatStorage", "collections:OrderedDict"],
})


def gbl(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def uni(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


# What torch.save writes for {"weight": a float tensor of 6 elements} (protocol 2, persistent ids).
TORCH_DATA_PKL = (
    b"\x80\x02}q\x00" + uni("weight") + b"q\x01" + gbl("torch._utils", "_rebuild_tensor_v2") + b"q\x02"
    + b"((" + uni("storage") + gbl("torch", "FloatStorage") + uni("0") + uni("cpu") + b"K\x06tq\x03Q"
    + b"K\x00K\x06\x85K\x01\x85\x89" + gbl("collections", "OrderedDict") + b")Rq\x04tq\x05Rq\x06s."
)
EVIL = b"\x80\x02" + gbl("os", "system") + uni("true") + b"\x85R."


def torch_zip(data_pkl: bytes = TORCH_DATA_PKL, *, extra: dict[str, bytes] | None = None,
              method: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/data/0", b"\x00" * 24)
        for name, data in (extra or {}).items():
            z.writestr(name, data)
        z.writestr("archive/version", "3\n")
        z.writestr("archive/.data/serialization_id", "1234")
    return buf.getvalue()


def kinds(report) -> list[tuple[str, str | None]]:
    return [(v.kind, v.name) for v in report.violations]


def test_pytorch_zip_checkpoint():
    data = torch_zip()
    ok = scan(data, policy=TORCH_POLICY)
    assert ok.ok, ok.violations
    assert ok.format == "zip" and "pytorch-zip" in ok.formats
    assert {g.qualified for g in ok.globals} == {"torch._utils:_rebuild_tensor_v2", "torch:FloatStorage",
                                                 "collections:OrderedDict"}
    assert [p.part for p in ok.pickles] == ["archive/data.pkl"]
    assert len(ok.persistent_ids) == 1
    refused = scan(data, policy="data-only")
    assert not refused.ok
    assert all(v.part == "archive/data.pkl" for v in refused.violations)
    assert ("persistent-id", None) in kinds(refused)


def test_every_pickle_member_is_scanned_not_only_data_pkl():
    data = torch_zip(extra={"archive/extra.pkl": EVIL, "archive/hidden": EVIL})
    report = scan(data, policy=TORCH_POLICY)
    parts = {v.part for v in report.violations if v.name == "os:system"}
    assert parts == {"archive/extra.pkl", "archive/hidden"}


def _patch_first_member(data: bytes, *, crc: bool = False, local_name: bytes | None = None,
                        flags: int | None = None) -> bytes:
    b = bytearray(data)
    assert b[:4] == b"PK\x03\x04"
    if crc:
        b[14:18] = b"\xde\xad\xbe\xef"
        cd = b.find(b"PK\x01\x02")
        b[cd + 16:cd + 20] = b"\xde\xad\xbe\xef"
    if local_name is not None:
        n = struct.unpack_from("<H", b, 26)[0]
        assert len(local_name) == n
        b[30:30 + n] = local_name
    if flags is not None:
        struct.pack_into("<H", b, 6, flags)
    return bytes(b)


@pytest.mark.parametrize("patch", [
    {"crc": True},
    {"local_name": b"archive/XXXX.pkl"},
    {"flags": 0x0808},
])
def test_zip_read_the_lenient_way_pytorch_reads_it(patch):
    data = _patch_first_member(torch_zip(EVIL), **patch)
    if "crc" in patch:
        with zipfile.ZipFile(io.BytesIO(data)) as z, pytest.raises(zipfile.BadZipFile):
            z.read("archive/data.pkl")
    report = scan(data, policy=TORCH_POLICY)
    assert ("global", "os:system") in kinds(report), report.violations
    if "local_name" in patch:
        assert any("local header names it" in n for n in report.notes)


def test_deflated_members_and_central_directory_lost():
    data = torch_zip(EVIL, method=zipfile.ZIP_DEFLATED)
    assert ("global", "os:system") in kinds(scan(data))
    stored = torch_zip(EVIL)
    cut = stored[:stored.find(b"PK\x01\x02")]  # no central directory: found by local headers
    report = scan(cut)
    assert ("global", "os:system") in kinds(report)
    assert any("local headers" in n for n in report.notes)


@pytest.mark.parametrize("data", [
    b"PK\x03\x04" + b"\x00" * 10,
    b"PK\x03\x04" + b"\xff" * 200,
    torch_zip()[:-30],
    b"PK\x03\x04" + b"\x00" * 22 + b"PK\x05\x06" + b"\xff" * 18,
])
def test_bad_zips_are_refused_without_a_traceback(data):
    report = scan(data, policy=TORCH_POLICY)
    assert not report.ok
    assert any(v.kind in ("container", "malformed") for v in report.violations)


def test_an_empty_zip_holds_no_pickle():
    report = scan(b"PK\x05\x06" + b"\x00" * 18)
    assert report.ok and report.format == "zip" and not report.pickles


def test_names_do_not_decide_the_format(tmp_path):
    a = tmp_path / "model.zip"
    a.write_bytes(EVIL)
    b = tmp_path / "weights.pkl"
    b.write_bytes(torch_zip(EVIL))
    c = tmp_path / "array.npy"
    c.write_bytes(EVIL)
    assert scan(a).format == "pickle"
    assert scan(b).format == "zip"
    assert scan(c).format == "pickle"
    for p in (a, b, c):
        assert ("global", "os:system") in kinds(scan(p))


def test_nested_archives_and_polyglots():
    inner = torch_zip(EVIL)
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w") as z:
        z.writestr("inner.zip", inner)
    report = scan(outer.getvalue())
    assert [v.part for v in report.violations if v.name == "os:system"] == ["inner.zip!archive/data.pkl"]
    # a pickle carrying a zip in a bytes value
    carrier = pickle.dumps({"blob": inner}, 4)
    report = scan(carrier)
    assert ("global", "os:system") in kinds(report)
    assert "zip" in report.formats and report.format == "pickle"
    # a zip appended to a pickle
    appended = pickle.dumps([1, 2], 2) + inner
    report = scan(appended)
    assert ("global", "os:system") in kinds(report)
    assert report.formats[:1] == ["pickle"] and "zip" in report.formats
    # a pickle whose bytes value holds another pickle
    report = scan(pickle.dumps([EVIL + b"\x00" * 4], 3))
    assert ("global", "os:system") in kinds(report)


def test_nesting_and_bombs_are_bounded_by_the_policy():
    small = Policy.model_validate({"name": "small", "limits": {"max_depth": 3, "max_input_bytes": 1 << 20,
                                                               "max_alloc_bytes": 4 << 20}})
    data = EVIL
    for i in range(6):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr(f"level{i}.zip" if i else "x.pkl", data)
        data = buf.getvalue()
    report = scan(data, policy=small)
    assert any(v.kind == "limit" and v.rule == "limits.max_depth" for v in report.violations)
    # a deflate bomb: 64 MiB of zeros in a few KiB
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", b"\x00" * (64 << 20))
    bomb = buf.getvalue()
    assert len(bomb) < 200_000
    report = scan(bomb, policy=small)
    assert any(v.rule == "limits.max_input_bytes" for v in report.violations)
    gz = gzip.compress(b"\x80\x04" + b"N0" * (8 << 20) + b"N.")
    report = scan(gz, policy=small)
    assert any(v.rule == "limits.max_input_bytes" for v in report.violations)


def test_npy_and_npz():
    np = pytest.importorskip("numpy")
    obj = io.BytesIO()
    np.save(obj, np.array([1, "x", None], dtype=object), allow_pickle=True)
    report = scan(obj.getvalue(), policy="data-only")
    assert report.format == "npy" and not report.ok
    assert scan(obj.getvalue(), policy="numpy-only").ok
    plain = io.BytesIO()
    np.save(plain, np.arange(10))
    report = scan(plain.getvalue())
    assert report.ok and not report.pickles
    npz = io.BytesIO()
    np.savez(npz, a=np.arange(3), b=np.array([{"k": 1}], dtype=object))
    report = scan(npz.getvalue(), policy="numpy-only")
    assert "npz" in report.formats and report.ok
    assert [p.part for p in report.pickles] == ["b.npy!array"]
    # an object .npy whose pickle calls os.system
    evil = io.BytesIO()
    np.save(evil, np.array([1], dtype=object), allow_pickle=True)
    raw = evil.getvalue()
    header_end = raw.index(b"\n") + 1
    report = scan(raw[:header_end] + EVIL, policy="numpy-only")
    assert ("global", "os:system") in kinds(report)


def test_joblib_arrays_are_skipped_exactly_and_what_follows_is_seen(tmp_path):
    joblib = pytest.importorskip("joblib")
    np = pytest.importorskip("numpy")
    path = tmp_path / "model.joblib"
    joblib.dump({"w": np.arange(7.0), "o": np.array([1, "x"], dtype=object), "after": os.system}, path)
    report = scan(path, policy="numpy-only")
    assert report.format == "joblib"
    names = {v.name for v in report.violations}
    assert "joblib.numpy_pickle:NumpyArrayWrapper" in names  # joblib is on the deny list
    system = {"posix:system", "os:system", "nt:system"} & names
    assert system, names  # the global written after the arrays was seen
    joblib_views = [p for p in report.pickles if p.view == "joblib"]
    assert joblib_views and joblib_views[0].end == path.stat().st_size
    assert any(p.view == "joblib object array" for p in report.pickles)
    for compress in (3, ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3)):
        cpath = tmp_path / "c.joblib"
        joblib.dump({"w": np.arange(5.0), "after": os.system}, cpath, compress=compress)
        report = scan(cpath, policy="numpy-only")
        assert "joblib" in report.formats
        assert {"posix:system", "os:system", "nt:system"} & {v.name for v in report.violations}, compress


def test_legacy_pytorch_format():
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, 2)
    parts = [magic, pickle.dumps(1001, 2), pickle.dumps({"protocol_version": 1001, "little_endian": True}, 2),
             TORCH_DATA_PKL, pickle.dumps(["0"], 2)]
    storage = struct.pack("<q", 6) + b"\x00" * 24
    data = b"".join(parts) + storage
    report = scan(data, policy=TORCH_POLICY)
    assert report.format == "pytorch-legacy", report.formats
    assert report.ok, report.violations
    assert len(report.pickles) == 5
    assert any("tensor storage data" in n for n in report.notes)


def test_tar_members_are_read_in_memory():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("pickle")
        info.size = len(EVIL)
        t.addfile(info, io.BytesIO(EVIL))
    report = scan(buf.getvalue())
    assert report.format == "tar"
    assert [v.part for v in report.violations if v.name == "os:system"] == ["pickle"]


def test_raw_pickle_reading_of_a_container_counts_its_globals():
    # a file that is a valid zip to PyTorch and names a global to a naive pickle.load
    zdata = torch_zip()
    polyglot = zdata + b""  # zip readers look at the end record; pickle.load at offset 0
    report = scan(polyglot, policy=TORCH_POLICY)
    assert report.ok


def test_compressed_garbage_is_a_container_problem():
    report = scan(b"\x1f\x8b" + b"\x00" * 30)
    assert not report.ok and report.violations[0].kind == "container"
    report = scan(b"\x78\x9c" + zlib.compress(b"x")[2:-2])
    assert not report.ok
