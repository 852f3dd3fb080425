"""target_codecs.py's codec specs: one table row per spec, pq's bytes a frame in the spec."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
import target_codecs  # noqa: E402


def test_codec_specs_name_pq_bytes_and_refuse_the_rest():
    assert target_codecs.codec_spec("pq", 8) == ("pq", 8)
    assert target_codecs.codec_spec("pq:4", 8) == ("pq", 4)
    assert target_codecs.codec_spec("int8", 8) == ("int8", 8)
    for bad in ("pq:x", "int8:4", "fp32"):
        with pytest.raises(SystemExit, match=f"'{bad}' is not one of"):
            target_codecs.codec_spec(bad, 8)
