"""finetuner-trigram: an example plugin whose text tower is written from scratch.

The hook is in :mod:`finetuner_trigram.plugin`, the tower and its builder in :mod:`finetuner_trigram.tower`.
"""

__version__ = "0.1.0"
