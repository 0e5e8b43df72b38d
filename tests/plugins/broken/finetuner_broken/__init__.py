"""Test plugin whose import fails, as a plugin with a missing dependency would."""

raise ImportError("finetuner_broken needs a package that is not installed (on purpose)")
