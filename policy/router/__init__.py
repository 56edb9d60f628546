"""The prompt router for ``model: auto``: difficulty score -> policy tiers.

``default_router().score(prompt)`` gives a difficulty in [0, 1]; ``evaluate(csv_path)``
reports APGR and savings on a labelled CSV; ``train`` reproduces ``router.json``.
"""

from policy.router.evaluate import evaluate
from policy.router.scorer import Router, default_router

__all__ = ["Router", "default_router", "evaluate"]
