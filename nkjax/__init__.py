"""nkjax: a deep-learning course as tested, runnable JAX code.

The library never reads flags or configs: experiments in `experiments/` do, and
pass explicit keyword arguments to the functions here.
"""

__version__ = '0.1.0'

# The GitHub repository (owner/name) nkjax is published under: the one place
# the README's Open-in-Colab badge and the notebook's install step are built
# from (tests/test_notebook.py checks both against it).
REPOSITORY = 'nkjax/nkjax'
NOTEBOOK = 'notebooks/nkjax_colab.ipynb'


def colab_url(branch: str = 'main') -> str:
  """The Colab address that opens the notebook from the repository."""
  return (
    f'https://colab.research.google.com/github/{REPOSITORY}/blob/{branch}/{NOTEBOOK}'
  )
