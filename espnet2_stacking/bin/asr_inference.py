#!/usr/bin/env python3
"""ESPnet's ASR decoding of models that use the plugin's components (recipe stage 6).

Example (CTC only):
    python -m espnet2_stacking.bin.asr_inference --ctc_weight 1.0 --beam_size 1 \
        --asr_train_config exp/asr_student/config.yaml \
        --asr_model_file exp/asr_student/valid.loss.best.pth \
        --data_path_and_name_and_type data/test/wav.scp,speech,sound \
        --output_dir exp/asr_student/decode_test    # -> 1best_recog/text
"""

from espnet2_stacking.tasks.register import register

register()

from espnet2.bin import asr_inference  # noqa: E402


def get_parser():
    return asr_inference.get_parser()


def main(cmd=None):
    asr_inference.main(cmd=cmd)


if __name__ == "__main__":
    main()
