#!/usr/bin/env python3
"""Count the characters of transcripts that a character token list lacks (recipe stage 5).

ESPnet's tokenizer maps such characters to <unk> without a word, so a test set written in
another alphabet, or with digits the training text never had, would be scored against targets
the model can never produce. This says how many there are, per file, before training.

Example:
    python -m espnet2_stacking.bin.check_text --token_list data/token_list/char/tokens.txt \
        data/dev/text data/test/text

Prints one line per file; exits 1 when an utterance has an empty transcript or when more than
--max_oov_rate of a file's characters are missing (default 0.01), naming the file.
"""

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional

from espnet2_stacking.data.kaldi_dir import read_scp

SPACE = "<space>"


def oov_counts(text: Path, tokens: set) -> Dict[str, object]:
    """{"chars", "oov": Counter of missing characters, "utts_with_oov", "empty": [uttids]}."""
    oov, chars, utts, empty = Counter(), 0, 0, []
    for uttid, transcript in read_scp(text, allow_empty=True).items():
        if not transcript.strip():
            empty.append(uttid)
            continue
        missing = [c for c in transcript if (SPACE if c == " " else c) not in tokens]
        chars += len(transcript)
        oov.update(missing)
        utts += bool(missing)
    return {"chars": chars, "oov": oov, "utts_with_oov": utts, "empty": empty}


def main(cmd: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--token_list", type=Path, required=True)
    parser.add_argument("--max_oov_rate", type=float, default=0.01)
    parser.add_argument("texts", type=Path, nargs="+", help="Kaldi text files")
    args = parser.parse_args(cmd)
    if not args.token_list.is_file():
        parser.error(f"token list {args.token_list} not found")
    tokens = set(args.token_list.read_text(encoding="utf-8").split())
    failed = False
    for text in args.texts:
        try:
            r = oov_counts(text, tokens)
        except (OSError, ValueError) as e:  # missing, not UTF-8, malformed: named in e
            print(f"check_text: {e}", file=sys.stderr)
            failed = True
            continue
        total = sum(r["oov"].values())
        rate = total / max(r["chars"], 1)
        shown = ", ".join(f"{c!r} x{n}" for c, n in r["oov"].most_common(5))
        print(f"check_text: {text}: {total} of {r['chars']} characters ({100 * rate:.2f} %) in "
              f"{r['utts_with_oov']} utterances are not in {args.token_list} and become <unk>"
              + (f": {shown}" if shown else ""), file=sys.stderr)
        if r["empty"]:
            print(f"check_text: {text}: empty transcript for {len(r['empty'])} utterances, e.g. "
                  f"{', '.join(r['empty'][:3])}", file=sys.stderr)
            failed = True
        if rate > args.max_oov_rate:
            print(f"check_text: {text}: more than {100 * args.max_oov_rate:.2f} % of its "
                  "characters are missing from the token list", file=sys.stderr)
            failed = True
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
