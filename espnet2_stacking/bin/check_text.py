#!/usr/bin/env python3
"""Count the tokens of transcripts that a token list lacks (recipe stage 5).

ESPnet's tokenizer maps such characters (or, with ``--unit word``, such words or phones) to
<unk> without a word, so a test set written in another alphabet, or with digits or phones the
training text never had, would be scored against targets the model can never produce. This
says how many there are, per file, before training; with ``--utt_list`` it also counts the
utterances of the data dir that have no transcript at all (ESPnet would stop mid-epoch on them).

Example:
    python -m espnet2_stacking.bin.check_text --token_list data/token_list/char/tokens.txt \
        data/dev/text data/test/text
    python -m espnet2_stacking.bin.check_text --unit word --utt_list wav.scp \
        --token_list data/token_list/phn/tokens.txt data/dev/text_phn data/test/text_phn

Prints one line per file; exits 1 when an utterance has an empty or missing transcript or when
more than --max_oov_rate of a file's tokens are missing (default 0.01), naming the file.
"""

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional

from espnet2_stacking.data.kaldi_dir import read_scp

SPACE = "<space>"


UNITS = ("char", "word")


def oov_counts(text: Path, tokens: set, unit: str = "char") -> Dict[str, object]:
    """{"chars": tokens counted, "oov": Counter of missing tokens, "utts_with_oov",
    "oov_uttids": [those utterances], "empty": [uttids], "uttids": every id of the file}; a
    token is a character (spaces as <space>) or, with unit "word", a whitespace-separated word
    or phone."""
    if unit not in UNITS:
        raise ValueError(f"unit '{unit}' is not one of {UNITS}")
    oov, chars, utts, empty, oov_utts = Counter(), 0, 0, [], []
    table = read_scp(text, allow_empty=True)
    for uttid, transcript in table.items():
        if not transcript.strip():
            empty.append(uttid)
            continue
        units = transcript.split() if unit == "word" else [SPACE if c == " " else c for c in transcript]
        missing = [t for t in units if t not in tokens]
        chars += len(units)
        oov.update(missing)
        utts += bool(missing)
        if missing:
            oov_utts.append(uttid)
    return {"chars": chars, "oov": oov, "utts_with_oov": utts, "oov_uttids": oov_utts,
            "empty": empty, "uttids": set(table)}


def main(cmd: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--token_list", type=Path, required=True)
    parser.add_argument("--max_oov_rate", type=float, default=0.01)
    parser.add_argument("--unit", choices=UNITS, default="char",
                        help="char: characters (spaces as <space>); word: whitespace-separated "
                             "words or phones")
    parser.add_argument("--utt_list", type=str, default=None,
                        help="A file name (e.g. wav.scp) in each text's directory whose first "
                             "column lists the utterances that must have a transcript")
    parser.add_argument("texts", type=Path, nargs="+", help="Kaldi text files")
    args = parser.parse_args(cmd)
    if not args.token_list.is_file():
        parser.error(f"token list {args.token_list} not found")
    tokens = set(args.token_list.read_text(encoding="utf-8").split())
    failed = False
    for text in args.texts:
        try:
            r = oov_counts(text, tokens, args.unit)
        except (OSError, ValueError) as e:  # missing, not UTF-8, malformed: named in e
            print(f"check_text: {e}", file=sys.stderr)
            failed = True
            continue
        what = "characters" if args.unit == "char" else "tokens"
        total = sum(r["oov"].values())
        rate = total / max(r["chars"], 1)
        shown = ", ".join(f"{c!r} x{n}" for c, n in r["oov"].most_common(5))
        print(f"check_text: {text}: {total} of {r['chars']} {what} ({100 * rate:.2f} %) in "
              f"{r['utts_with_oov']} utterances are not in {args.token_list} and become <unk>"
              + (f": {shown}, e.g. in {', '.join(r['oov_uttids'][:3])}" if shown else ""),
              file=sys.stderr)
        if args.utt_list is not None:
            listing = text.parent / args.utt_list
            try:
                wanted = set(read_scp(listing, allow_empty=True))
            except (OSError, ValueError) as e:
                print(f"check_text: {e}", file=sys.stderr)
                failed = True
                continue
            absent = sorted(wanted - r["uttids"])
            if absent:
                print(f"check_text: {text}: no transcript for {len(absent)} of the {len(wanted)} "
                      f"utterances of {listing}, e.g. {', '.join(absent[:3])}", file=sys.stderr)
                failed = True
        if r["empty"]:
            print(f"check_text: {text}: empty transcript for {len(r['empty'])} utterances, e.g. "
                  f"{', '.join(r['empty'][:3])}", file=sys.stderr)
            failed = True
        if rate > args.max_oov_rate:
            print(f"check_text: {text}: more than {100 * args.max_oov_rate:.2f} % of its "
                  f"{what} are missing from the token list", file=sys.stderr)
            failed = True
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
