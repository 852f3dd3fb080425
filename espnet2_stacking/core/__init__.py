"""The pure core: frame geometry and small parsing / formatting helpers.

Nothing here imports torch or ESPnet; every other package may import it.
"""
