"""lslib: label-smoothing losses, attacks and analysis for
*Adversarial Robustness via Label-Smoothing* (Goibert & Dohmatob, 2020).

Modules (one idea each):

- :mod:`lslib.losses`      the unified label-smoothing framework of Section 2 (eqs. 1-7, Theorem 1)
- :mod:`lslib.attacks`     FGSM, BIM/PGD, DeepFool and Carlini-Wagner L2, batched
- :mod:`lslib.gaussian`    the fading-Gaussian analysis of Section 3.1 (eqs. 8-11, Lemma 1)
- :mod:`lslib.models`, :mod:`lslib.data`, :mod:`lslib.train`, :mod:`lslib.experiments`
                           the reproduction of Section 4 (Tables 2-6)
- :mod:`lslib.grade`       the graded exercise "break this defence" (a defence built from a seed,
                           and an honest grader)
- :mod:`lslib.allocator`   keep freed CPU memory in the process (opt-in; the command line uses it)
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lslib")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
