"""Downstream ASR on a frozen upstream: the ``stacking_upstream`` frontend and WER/CER scoring."""
