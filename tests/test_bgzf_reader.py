"""The threaded BGZF reader (large phenotype BED files): same bytes as gzip, checked members,
plain gzip left to pandas, and the phenotype Dataset unchanged."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from dqtl.errors import InputError
from dqtl.io.bgzf import BgzfWriter, open_bgzf


def _bgzf(path, data: bytes) -> None:
    with open(path, "wb") as raw, BgzfWriter(raw) as w:
        w.write(data)


def _text(rng, lines: int) -> bytes:
    return b"".join(b"chr1\t%d\t%d\tg%d\t%s\n" % (i, i + 1, i, b"\t".join(b"%.6f" % x for x in rng.random(8)))
                    for i in range(lines))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_open_bgzf__same_bytes_as_gzip(tmp_path, threads, monkeypatch):
    import threading

    import dqtl.io.bgzf as bgzf

    monkeypatch.setattr(bgzf, "_BGZF_TASK_BYTES", 50_000)  # many runs of members, read ahead
    data = _text(np.random.default_rng(0), 9000)  # ~0.6 MB: ten members
    path = tmp_path / "x.bed.gz"
    _bgzf(path, data)
    with open_bgzf(str(path), threads) as stream:
        first = stream.readline()
        got = first + stream.read(12345) + stream.read()
    assert got == data == gzip.decompress(path.read_bytes())
    assert not [t for t in threading.enumerate() if t.name.startswith("dqtl-bgzf")]  # closed


def test_open_bgzf__not_bgzf_is_none(tmp_path):
    plain = tmp_path / "plain.gz"
    plain.write_bytes(gzip.compress(b"a\tb\n1\t2\n"))
    assert open_bgzf(str(plain), 2) is None
    text = tmp_path / "text.bed"
    text.write_bytes(b"#chr\tstart\n")
    assert open_bgzf(str(text), 2) is None
    cut = tmp_path / "cut.gz"  # truncated inside a member: not BGZF here (pandas' reader raises)
    _bgzf(cut, _text(np.random.default_rng(1), 3000))
    cut.write_bytes(cut.read_bytes()[:-100])
    assert open_bgzf(str(cut), 2) is None
    mixed = tmp_path / "mixed.gz"  # bgzip's members, then a plain gzip member: pandas reads it
    _bgzf(mixed, b"a\tb\n")
    mixed.write_bytes(mixed.read_bytes() + gzip.compress(b"1\t2\n"))
    assert open_bgzf(str(mixed), 2) is None


def test_open_bgzf__corrupt_member_names_its_offset(tmp_path):
    path = tmp_path / "x.bed.gz"
    _bgzf(path, _text(np.random.default_rng(2), 3000))
    raw = bytearray(path.read_bytes())
    second = raw.index(b"\x1f\x8b\x08\x04", 1)  # the second member
    raw[second + 40] ^= 0xFF  # a byte of its deflate stream
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=f"block at byte {second:,}"), open_bgzf(str(path), 2) as stream:
        stream.read()


def test_read_phenotype_bed__threaded_bgzf_equals_pandas_gzip(tmp_path, monkeypatch):
    import dqtl.io.phenotypes as ph

    rng = np.random.default_rng(3)
    samples = [f"s{i}" for i in range(40)]
    rows = [b"#chr\tstart\tend\tphenotype_id\t" + "\t".join(samples).encode() + b"\n"]
    for i in range(600):
        values = [b"%.17g" % x for x in rng.standard_normal(40)]
        if i == 8:
            values[-1] = b"NA"  # a missing value
        rows.append(b"chr%d\t%d\t%d\tg%d\t" % (1 + i // 300, 1000 * i, 1000 * i + 1, i) + b"\t".join(values) + b"\n")
    path = tmp_path / "p.bed.gz"
    _bgzf(path, b"".join(rows))
    monkeypatch.setattr(ph, "BGZF_THREADED_BYTES", 1)
    threaded = ph.read_phenotype_bed(path)
    monkeypatch.setattr(ph, "BGZF_THREADED_BYTES", 1 << 40)
    plain = ph.read_phenotype_bed(path)
    assert threaded.identical(plain)
    assert int(np.isnan(plain["phenotype_values"].values).sum()) == 1
    raw = bytearray(path.read_bytes())
    raw[60] ^= 0xFF
    path.write_bytes(bytes(raw))
    monkeypatch.setattr(ph, "BGZF_THREADED_BYTES", 1)
    with pytest.raises(InputError, match="does not decode"):
        ph.read_phenotype_bed(path)


def test_read_phenotype_bed__bgzf_header_only_and_ragged_rows(tmp_path, monkeypatch):
    import dqtl.io.phenotypes as ph

    monkeypatch.setattr(ph, "BGZF_THREADED_BYTES", 1)
    path = tmp_path / "h.bed.gz"
    _bgzf(path, b"#chr\tstart\tend\tphenotype_id\ts1\ts2\n")
    with pytest.raises(InputError, match="has a header but no data rows"):
        ph.read_phenotype_bed(path)
    _bgzf(path, b"#chr\tstart\tend\tphenotype_id\ts1\ts2\nchr1\t1\t2\tg\t0.5\n")
    with pytest.raises(InputError, match="the header has 6 columns but the rows have 5"):
        ph.read_phenotype_bed(path)
