"""The yardstick rows every cell carries, by the names MLflow stores them under.

A leaf module, so the runner (which writes these rows) and the report (which reads
them) share the names without importing each other.
"""

from __future__ import annotations

ORIGINAL = "original"  # the model before unlearning: doing nothing
RETRAIN = "retrain"  # the target: trained from scratch on D_r (the `retrain` method's row)
FLOOR = "retrain (seed')"  # the reference retrain (another seed), audited like a method: the noise floor
YARDSTICKS = (ORIGINAL, RETRAIN, FLOOR)
