"""Distributed training reads the dump on every node: check at start that every rank sees the
same one (a stale node-local copy would train ranks on different targets without an error)."""

import hashlib
import logging
import socket
from pathlib import Path
from typing import Dict, List, Optional

import torch

from espnet2_stacking.stacking import StackingConfigError


def dump_fingerprint(dump_dir) -> Dict[str, str]:
    """sha256 of a dump dir's meta.json and lists: what must match on every node."""
    root = Path(dump_dir)
    files = [root / "meta.json", *sorted(root.glob("*.scp")), root / "utt2num_frames"]
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() if f.is_file() else "missing"
            for f in files}


def check_ranks_see_the_same_dump(dump_dirs: List[Optional[str]]) -> None:
    """Distributed training: every rank must read the same dump (a stale node-local copy
    would train ranks on different targets without an error); refuse at start otherwise."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    dirs = [d for d in dump_dirs if d]
    mine = (socket.gethostname(), [dump_fingerprint(d) for d in dirs])
    everyone = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(everyone, mine)
    host0, seen0 = everyone[0]
    for rank, (host, seen) in enumerate(everyone):
        for d, files, files0 in zip(dirs, seen, seen0):
            differ = [f for f in files0 if files.get(f) != files0[f]]
            if differ:
                raise StackingConfigError(
                    f"rank {rank} on {host} reads another dump than rank 0 on {host0}: "
                    f"{', '.join(str(Path(d) / f) for f in differ)} differ (copy the same dump "
                    "to every node, at the same path, or read it from a shared filesystem)")
    logging.info(f"all {len(everyone)} ranks see the same dump ({', '.join(map(str, dirs)) or 'none'})")
