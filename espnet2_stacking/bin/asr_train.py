#!/usr/bin/env python3
"""ESPnet's ASR training with the plugin's components (recipe stage 5).

Example:
    python -m espnet2_stacking.bin.asr_train --config conf/asr_superb.yaml \
        --frontend_conf upstream=exp/student_interleaved_eql/model.pth \
        --token_list data/token_list/char/tokens.txt \
        --train_data_path_and_name_and_type data/train/wav.scp,speech,sound \
        --train_data_path_and_name_and_type data/train/text,text,text ... --output_dir exp/asr_student
"""

from espnet2_stacking.tasks.register import register

register()

from espnet2_stacking.tasks.asr import StackingASRTask  # noqa: E402


def get_parser():
    return StackingASRTask.get_parser()


def main(cmd=None):
    StackingASRTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
