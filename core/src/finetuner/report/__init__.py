"""What finetuner shows people: terminal tables, the training report's plots and HTML page.

- :mod:`~finetuner.report.tables`: the box style every terminal table is drawn in.
- :mod:`~finetuner.report.backbones`: the "Finetuner backbones" table (``describe_models``).
- :mod:`~finetuner.report.metrics`: metric tables, one run or before/after; the headline subset.
- :mod:`~finetuner.report.plots`: loss and metric curves (PNG, needs matplotlib).
- :mod:`~finetuner.report.page`: the self-contained HTML page.
- :mod:`~finetuner.report.training`: an artifact's training report (``finetuner report``), and its example queries as text.

Nothing is imported here: ``import finetuner`` reads the backbones table only.
"""
