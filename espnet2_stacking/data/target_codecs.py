"""How dumped teacher states are stored: a target codec, chosen at dump time.

    fp16  (frames, D) float16: the reference, 2 D bytes a frame.
    int8  (frames, D + 2) int8: x - mean, scaled per frame by its absmax / 127; the last two
          columns are that scale's float16 bits. D + 2 bytes a frame.
    pq    (frames, M) uint8: product quantisation (M sub-vectors, 256 centroids each) of
          x - mean after a learned rotation (OPQ). M bytes a frame.

int8 and pq remove a per-layer mean first (deep layers have a large one that would otherwise
take the int8 range and the centroids' resolution). Their parameters (mean; rotation and
centroids) are trained on a sample of the teacher's frames by faiss and stored beside the dump
in ``codecs/<stream>.npz`` (a stream is ``layer_<t>`` or ``cnn``), with a JSON header naming the
teacher, the stream and the codec; the dump's meta.json records each file's digest, so a file
from another teacher, layer, codec or dump is refused by name.

Decoding is linear in the codes: a pq frame is ``mean + sum_m table[m, code_m]`` with the
rotation folded into the (M, 256, D) tables, which the model looks up on its device
(:mod:`espnet2_stacking.student.target_codec`); this module only encodes (numpy, at dump time)
and reads the parameters.
"""

import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np

from espnet2_stacking.data.atomic import atomic_output

CODECS = ("fp16", "int8", "pq")
NUM_CENTROIDS = 256  # 8-bit codes: one uint8 per sub-vector
CODEC_FORMAT = 1


def stored_dtype(codec: str) -> np.dtype:
    return np.dtype({"fp16": np.float16, "int8": np.int8, "pq": np.uint8}[codec])


def stored_width(codec: str, dim: int, num_codebooks: int) -> int:
    """Columns of a stored frame of a dim-wide state."""
    return {"fp16": dim, "int8": dim + 2, "pq": num_codebooks}[codec]


def bytes_per_frame(codec: str, dim: int, num_codebooks: int) -> int:
    return stored_width(codec, dim, num_codebooks) * stored_dtype(codec).itemsize


def check_codec_options(codec: str, dims: Dict[str, int], num_codebooks: int) -> None:
    if codec not in CODECS:
        raise ValueError(f"unknown target codec '{codec}' (choose from {', '.join(CODECS)})")
    if codec == "pq":
        bad = {s: d for s, d in dims.items() if num_codebooks < 1 or d % num_codebooks}
        if bad:
            raise ValueError(f"--num_codebooks {num_codebooks} must divide the width of every "
                             f"dumped state (pq splits a frame into equal sub-vectors): {bad}")


def codec_path(dump_dir: Union[str, Path], stream: str) -> Path:
    return Path(dump_dir) / "codecs" / f"{stream}.npz"


def file_digest(path: Union[str, Path]) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def train_codec(sample: np.ndarray, codec: str, num_codebooks: Optional[int], header: dict,
                seed: int = 0, opq_iters: int = 10) -> Dict[str, np.ndarray]:
    """Codec parameters from a (frames, D) float32 sample of one stream.

    header: what the parameters belong to (teacher, stream, ...), stored with them.
    num_codebooks: pq's sub-vectors (None for int8); opq_iters: rotation updates (faiss's
    default 50 costs minutes on a large sample for little gain)."""
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    dim = sample.shape[1]
    params = {"header": np.array(json.dumps(
        {**header, "codec": codec, "dim": dim, "num_codebooks": num_codebooks,
         "format": CODEC_FORMAT}, sort_keys=True)),
        "mean": sample.mean(0).astype(np.float32)}
    if codec == "pq":
        if len(sample) < NUM_CENTROIDS:
            raise ValueError(f"{header.get('stream')}: {len(sample)} frames cannot train "
                             f"{NUM_CENTROIDS} centroids per sub-vector (dump more audio or "
                             "raise --codebook_frames)")
        import faiss  # only the dump needs it

        if len(sample) < 39 * NUM_CENTROIDS:  # faiss's own advice, said once, not per k-means
            logging.warning(f"{header.get('stream')}: {len(sample)} frames train the pq "
                            f"codebooks; faiss advises {39 * NUM_CENTROIDS} or more")
        x = sample - params["mean"]
        opq = faiss.OPQMatrix(dim, num_codebooks)
        opq.verbose = False
        opq.niter = opq_iters
        opq.pq = faiss.ProductQuantizer(dim, num_codebooks, 8)
        opq.pq.cp.seed = seed
        opq.pq.cp.min_points_per_centroid = 1  # warned above
        opq.train(x)
        rotation = faiss.vector_to_array(opq.A).reshape(dim, dim)
        pq = faiss.ProductQuantizer(dim, num_codebooks, 8)
        pq.cp.seed = seed
        pq.cp.min_points_per_centroid = 1
        pq.train(np.ascontiguousarray(x @ rotation.T))
        params["rotation"] = rotation.astype(np.float32)
        params["centroids"] = faiss.vector_to_array(pq.centroids).reshape(
            num_codebooks, NUM_CENTROIDS, dim // num_codebooks).astype(np.float32)
    return params


def save_codec(path: Path, params: Dict[str, np.ndarray]) -> str:
    """Write (then rename) the parameters; returns the file's digest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **params)
    with atomic_output(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return file_digest(path)


def header_of(params: Dict[str, np.ndarray]) -> dict:
    return json.loads(str(params["header"]))


def load_codec(path: Path, expect: dict, digest: Optional[str] = None) -> Dict[str, np.ndarray]:
    """Read codec parameters, refusing a file that is not the one expected: ``expect`` are
    header fields (teacher, stream, codec, dim, num_codebooks) it must hold, ``digest`` the
    one the dump recorded."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: codec parameters missing (the dump's codecs/ dir)")
    try:
        with np.load(path, allow_pickle=False) as f:
            params = {k: f[k] for k in f.files}
        header = header_of(params)
    except Exception as e:
        raise ValueError(f"{path}: unreadable codec parameters: {e}") from e
    wrong = {k: (header.get(k), v) for k, v in expect.items() if header.get(k) != v}
    if wrong:
        raise ValueError(f"{path}: codec parameters of another teacher, layer or codec: "
                         + ", ".join(f"{k} is {a!r}, expected {b!r}" for k, (a, b) in wrong.items()))
    if digest is not None and file_digest(path) != digest:
        raise ValueError(f"{path}: not the codec file this dump was encoded with (its digest "
                         "differs from the one meta.json recorded: replaced or overwritten)")
    dim = header["dim"]
    shapes = {"mean": (dim,)}
    if header["codec"] == "pq":
        m = header["num_codebooks"]
        shapes.update(rotation=(dim, dim), centroids=(m, NUM_CENTROIDS, dim // m))
    for key, shape in shapes.items():
        if key not in params or params[key].shape != shape:
            raise ValueError(f"{path}: '{key}' should be {shape}, got "
                             f"{None if key not in params else params[key].shape}")
    return params


def decode_tables(params: Dict[str, np.ndarray]) -> np.ndarray:
    """(M, 256, D) float32 tables: a pq frame is mean + sum_m tables[m, code_m] (the rotation
    folded in: it is orthonormal, so x = (x A^T) A)."""
    centroids, rotation = params["centroids"], params["rotation"]
    m, k, sub = centroids.shape
    padded = np.zeros((m, k, m * sub), np.float32)
    for i in range(m):  # M blocks, not frames
        padded[i, :, i * sub:(i + 1) * sub] = centroids[i]
    return padded @ rotation


class Encoder:
    """Encodes (frames, D) float32 states of one stream into its stored form."""

    def __init__(self, codec: str, params: Optional[Dict[str, np.ndarray]] = None):
        self.codec = codec
        self.params = params
        self._pq = None
        if codec == "pq":
            import faiss

            m, k, sub = params["centroids"].shape
            self._pq = faiss.ProductQuantizer(m * sub, m, 8)
            faiss.copy_array_to_vector(params["centroids"].ravel(), self._pq.centroids)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.codec == "fp16":
            return x.astype(np.float16)
        x = np.asarray(x, np.float32) - self.params["mean"]
        if self.codec == "int8":
            scale = (np.abs(x).max(1, keepdims=True) / 127).astype(np.float16)
            safe = np.where(scale == 0, 1, scale.astype(np.float32))
            q = np.clip(np.rint(x / safe), -127, 127).astype(np.int8)
            return np.concatenate([q, scale.view(np.int8)], axis=1)
        return self._pq.compute_codes(np.ascontiguousarray(x @ self.params["rotation"].T))


def decode_numpy(codec: str, params: Optional[Dict[str, np.ndarray]], stored: np.ndarray) -> np.ndarray:
    """Stored frames back to float32 (for checks and the bench; training decodes on its
    device, in the model)."""
    if codec == "fp16":
        return stored.astype(np.float32)
    if codec == "int8":
        dim = stored.shape[1] - 2
        scale = np.ascontiguousarray(stored[:, dim:]).view(np.float16).astype(np.float32)
        return stored[:, :dim].astype(np.float32) * scale + params["mean"]
    tables = decode_tables(params)
    return tables[np.arange(tables.shape[0])[None, :], stored.astype(np.int64)].sum(1) + params["mean"]
