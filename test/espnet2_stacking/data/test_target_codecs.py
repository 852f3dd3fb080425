"""Target codecs: what each stores, how close it decodes, and codec files refused by name."""

import faiss
import numpy as np
import pytest
import torch

from espnet2_stacking.data import target_codecs as codecs
from espnet2_stacking.student.target_codec import TargetDecoder

# k-means threads spin-wait for each other: on a busy 2-core machine one thread is 5x faster
faiss.omp_set_num_threads(1)
HEADER = {"teacher": "t", "normalize": "none", "stream": "layer_2"}


@pytest.fixture(scope="module")
def states():
    """Frames with a large mean and correlated dims, as deep teacher layers have."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 4)) @ rng.standard_normal((4, 16)) + 0.1 * rng.standard_normal((3000, 16))
    return (x * 0.2 + 3.0).astype(np.float32)


@pytest.fixture(scope="module")
def pq_params(states):
    return codecs.train_codec(states, "pq", 4, HEADER)


def relative_error(x, y):
    return float(((x - y) ** 2).mean() / x.var(0).mean())


def test_stored_forms_and_their_error(states, pq_params):
    int8 = codecs.train_codec(states, "int8", None, HEADER)
    for codec, params, width, bound in (("fp16", None, 16, 1e-5), ("int8", int8, 18, 1e-3),
                                        ("pq", pq_params, 4, 0.1)):
        stored = codecs.Encoder(codec, params)(states)
        assert stored.dtype == codecs.stored_dtype(codec) and stored.shape == (3000, width)
        assert stored.nbytes == 3000 * codecs.bytes_per_frame(codec, 16, 4)
        assert relative_error(states, codecs.decode_numpy(codec, params, stored)) < bound
    # pq: the folded tables decode as faiss's own quantiser does (rotate, PQ, rotate back)
    import faiss

    codes = codecs.Encoder("pq", pq_params)(states[:50])
    pq = faiss.ProductQuantizer(16, 4, 8)
    faiss.copy_array_to_vector(pq_params["centroids"].ravel(), pq.centroids)
    reference = pq.decode(codes) @ pq_params["rotation"] + pq_params["mean"]
    assert np.allclose(codecs.decode_numpy("pq", pq_params, codes), reference, atol=1e-5)
    # the codes carry information: another frame's codes decode far worse
    assert relative_error(states[:50], codecs.decode_numpy("pq", pq_params, codes[::-1])) > 0.5


def test_the_model_side_decoder_matches_numpy_and_keeps_its_tables_out_of_checkpoints(states, pq_params):
    int8 = codecs.train_codec(states, "int8", None, HEADER)
    for codec, params in (("int8", int8), ("pq", pq_params)):
        stored = codecs.Encoder(codec, params)(states[:60])
        decoder = TargetDecoder(codec, params, source="x.npz")
        batch = torch.from_numpy(stored).reshape(3, 20, -1)  # (batch, frames, stored width)
        out = decoder(batch)
        assert out.shape == (3, 20, 16) and out.dtype == torch.float32
        assert np.allclose(out.reshape(60, 16).numpy(), codecs.decode_numpy(codec, params, stored), atol=1e-4)
        assert decoder.state_dict() == {}
    fp16 = torch.zeros(2, 5, 16, dtype=torch.float16)
    assert decoder(fp16) is fp16  # an fp16 dump (validation's reference) passes through
    with pytest.raises(ValueError, match="x.npz: pq targets must be torch.uint8"):
        decoder(torch.zeros(2, 5, 4, dtype=torch.int8))


def test_a_codec_file_of_another_stream_codec_or_dump_is_refused_by_name(tmp_path, states, pq_params):
    path = tmp_path / "codecs" / "layer_2.npz"
    digest = codecs.save_codec(path, pq_params)
    expect = {**HEADER, "codec": "pq", "num_codebooks": 4}
    assert codecs.load_codec(path, expect, digest)["centroids"].shape == (4, 256, 4)
    with pytest.raises(ValueError, match=r"layer_2.npz: .*stream is 'layer_2', expected 'layer_4'"):
        codecs.load_codec(path, {**expect, "stream": "layer_4"})
    with pytest.raises(ValueError, match=r"layer_2.npz: .*codec is 'pq', expected 'int8'"):
        codecs.load_codec(path, {**expect, "codec": "int8"})
    with pytest.raises(ValueError, match=r"layer_2.npz: .*teacher is 't', expected 'u'"):
        codecs.load_codec(path, {**expect, "teacher": "u"})
    codecs.save_codec(path, codecs.train_codec(states[::2], "pq", 4, HEADER, seed=1))  # retrained
    with pytest.raises(ValueError, match="layer_2.npz: not the codec file this dump was encoded with"):
        codecs.load_codec(path, expect, digest)
    with pytest.raises(ValueError, match="must divide the width"):
        codecs.check_codec_options("pq", {"layer_2": 16, "cnn": 10}, 4)
