"""nkjax: a deep-learning course as tested, runnable JAX code.

The library never reads flags or configs: experiments in `experiments/` do, and
pass explicit keyword arguments to the functions here.
"""

__version__ = '0.1.0'
