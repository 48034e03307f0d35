"""Built-in metrics: the ABAW scoring functions of affbench.metrics, as registered components.

``factory()`` returns the function itself; affbench.metrics (numpy, scikit-learn) is imported on first use.
"""

from __future__ import annotations

from affbench import hookimpl


def ccc():
    """Lin's concordance correlation coefficient, population statistics (ABAW)."""
    from affbench.metrics import ccc as fn

    return fn


def va_score():
    """CCC of valence and arousal over all frames, and their mean (ABAW VA score)."""
    from affbench.metrics import va_score as fn

    return fn


def expr_f1():
    """Macro F1 over all 8 expression classes, absent ones counting 0 (ABAW EXPR score)."""
    from affbench.metrics import expr_f1 as fn

    return fn


def au_f1():
    """Mean binary F1 over the 12 action units (ABAW AU score)."""
    from affbench.metrics import au_f1 as fn

    return fn


@hookimpl
def affbench_register_metrics(register):
    register("ccc", ccc)
    register("va_score", va_score)
    register("expr_f1", expr_f1)
    register("au_f1", au_f1)
