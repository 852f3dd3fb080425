"""Check one audio file with soundfile, cheaply, and run per-file work in parallel.

:func:`check_audio` reads the header (sample rate, channels, length) and decodes only the last
frames, which catches files cut short (a truncated FLAC keeps its full length in the header)
without decoding whole files.
"""

import multiprocessing
import os
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, TypeVar, Union

import soundfile
from tqdm import tqdm
from typeguard import typechecked

from espnet2_stacking.core.frames import SAMPLE_RATE  # every data dir of this package is 16 kHz mono
from espnet2_stacking.data.parallel_config import LOCAL, cluster_imap

MISSING = "missing audio"
UNREADABLE = "unreadable audio"
WRONG_RATE = "wrong sample rate"
MULTI_CHANNEL = "multi-channel audio"
ZERO_LENGTH = "zero-length audio"

TAIL_FRAMES = 1024
UNKNOWN_LENGTH = 2**62  # libsndfile reports an unknown length as INT64_MAX frames

T = TypeVar("T")
R = TypeVar("R")


class AudioError(Exception):
    """An audio file that cannot be used: ``reason`` is one of the constants above."""

    def __init__(self, path: str, reason: str, detail: str):
        super().__init__(path, reason, detail)  # all args, so the error pickles across jobs
        self.path, self.reason, self.detail = path, reason, detail

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}: {self.detail}"


@typechecked
def check_audio(path: Union[str, Path], fs: int = SAMPLE_RATE) -> int:
    """Return the number of samples of a usable mono ``fs`` Hz file; raise AudioError if not.

    Example:
        >>> n = check_audio("/data/LibriSpeech/dev-clean/84/121123/84-121123-0000.flac")
    """
    path = str(path)
    if not os.path.isfile(path):
        raise AudioError(path, MISSING, "no such file")
    if os.path.getsize(path) == 0:
        raise AudioError(path, ZERO_LENGTH, "empty file (0 bytes)")
    try:
        info = soundfile.info(path)
    except (soundfile.SoundFileError, OSError) as e:
        raise AudioError(path, UNREADABLE, f"cannot open: {e}")
    if info.samplerate != fs:
        raise AudioError(path, WRONG_RATE, f"{info.samplerate} Hz, expected {fs} Hz")
    if info.channels != 1:
        raise AudioError(path, MULTI_CHANNEL, f"{info.channels} channels, expected mono")
    if info.frames <= 0:
        raise AudioError(path, ZERO_LENGTH, "no samples")
    if info.frames >= UNKNOWN_LENGTH:
        raise AudioError(path, UNREADABLE, "the header gives no length (a streamed FLAC?); "
                                           "re-encode the file")
    want = min(TAIL_FRAMES, info.frames)
    try:
        with soundfile.SoundFile(path) as f:
            f.seek(info.frames - want)
            got = len(f.read(want, dtype="int16"))
    except (soundfile.SoundFileError, OSError) as e:
        raise AudioError(path, UNREADABLE, f"truncated or corrupt (last frames: {e})")
    if got != want:
        raise AudioError(path, UNREADABLE, f"truncated: header says {info.frames} samples, "
                                           f"the last {want - got} are missing")
    return info.frames


def parallel_imap(
    fn: Callable[[T], R],
    items: Sequence[T],
    nj: int,
    desc: str,
    cluster: Optional[dict] = None,
) -> Iterator[R]:
    """``fn`` over ``items`` in input order on ``nj`` processes (in this process for nj=1),
    with a progress bar. ``fn`` must be a module-level function. Stopping the iteration early
    (e.g. an exception in the caller) terminates the workers.

    ``cluster``: a job class of the site's parallel config
    (:func:`~espnet2_stacking.data.parallel_config.read_job_class`); when it is a cluster
    (Slurm, SGE, PBS, SSH...), the items go in chunks to its Dask workers (its n_workers, else
    ``nj``) instead of local processes."""
    bar = tqdm(total=len(items), desc=desc, unit="file")
    try:
        if cluster is not None and cluster.get("env", LOCAL) != LOCAL:
            workers = int(cluster.get("n_workers") or nj)
            chunksize = max(1, min(1024, len(items) // (max(1, workers) * 8)))
            for results in cluster_imap(fn, list(items), cluster, nj, chunksize):
                for result in results:
                    bar.update(1)
                    yield result
            return
        if nj <= 1 or len(items) <= 1:
            for item in items:
                result = fn(item)
                bar.update(1)  # before yielding: the caller may stop after the last item
                yield result
            return
        chunksize = max(1, min(64, len(items) // (nj * 8)))
        with multiprocessing.Pool(nj) as pool:
            for result in pool.imap(fn, items, chunksize=chunksize):
                bar.update(1)
                yield result
    finally:
        bar.close()
