#!/usr/bin/env python3
"""Phone transcripts (text_phn) of data dirs from a pronunciation lexicon, for phoneme
recognition (recipe task ``pr``) on a corpus with word transcripts only, e.g. LibriSpeech.

Example (openslr 11's librispeech-lexicon.txt, or a CMUdict-style file; nothing downloaded):
    python -m espnet2_stacking.bin.lexicon_phones --lexicon /data/librispeech-lexicon.txt \\
        data/train_clean_100 data/dev_clean data/test_clean data/test_other

Writes <dir>/text_phn (``<utt> <phone> <phone> ...``) for every dir, or none: an utterance with
a word the lexicon lacks (or no words) is reported, per dir, with its count, and listed with
its missing words in <dir>/text_phn.oov; then nothing is written and the exit status is 1.
Extend the lexicon (e.g. with a G2P's pronunciations) and rerun.
"""

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import List, Optional

from espnet2_stacking.data.kaldi_dir import DataPrepError
from espnet2_stacking.data.lexicon import read_lexicon, write_phone_texts


def main(cmd: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lexicon", type=Path, required=True,
                        help="WORD PHONE PHONE ... per line (the first pronunciation is used)")
    parser.add_argument("--strip_stress", choices=("true", "false"), default="false",
                        help="Drop ARPAbet stress digits (AH0 -> AH)")
    parser.add_argument("--out_name", default="text_phn", help="File written in each dir")
    parser.add_argument("data_dirs", type=Path, nargs="+", help="Kaldi-style dirs with a text")
    args = parser.parse_args(cmd)
    try:
        lexicon, alternates = read_lexicon(args.lexicon, args.strip_stress == "true")
        print(f"lexicon_phones: {args.lexicon}: {len(lexicon)} words, "
              f"{len({p for ps in lexicon.values() for p in ps})} phones"
              + (f" ({alternates} alternate pronunciations not used)" if alternates else ""),
              file=sys.stderr)
        failed = write_phone_texts(args.data_dirs, lexicon, args.out_name)
    except DataPrepError as e:
        sys.exit(f"lexicon_phones: error: {e}")
    for d, oov in failed.items():
        words = Counter(w for ws in oov.values() for w in ws)
        shown = ", ".join(f"{w} x{n}" for w, n in words.most_common(5))
        print(f"lexicon_phones: {d}/text: {len(oov)} utterance(s) have words {args.lexicon} "
              f"lacks ({len(words)} distinct: {shown}), e.g. {', '.join(sorted(oov)[:3])}; "
              f"all listed in {d}/{args.out_name}.oov", file=sys.stderr)
    if failed:
        sys.exit(f"lexicon_phones: no {args.out_name} written; add the missing words to the "
                 "lexicon and rerun")
    print(f"lexicon_phones: wrote {args.out_name} in {len(args.data_dirs)} dir(s)", file=sys.stderr)


if __name__ == "__main__":
    main()
