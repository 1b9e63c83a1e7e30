"""`python -m nkjax.bench`."""

from nkjax.bench.cli import main

main()
