"""Make the plugin's components known to ESPnet.

ESPnet has no plugin registry: its tasks read module-level dicts and ClassChoices when they
build their parsers. Every entry point of this package calls :func:`register` first (also in
spawned multi-GPU workers, which import the entry point's module again), never as a side effect
of importing the package.
"""

_done = False


def register() -> None:
    """Add the plugin's scheduler to ESPnet's scheduler table (idempotent)."""
    global _done
    if _done:
        return
    from espnet2.tasks import abs_task

    from espnet2_stacking.schedulers.warmup_linear_decay_lr import WarmupLinearDecayLR

    abs_task.scheduler_classes.setdefault("warmuplineardecaylr", WarmupLinearDecayLR)
    _done = True
