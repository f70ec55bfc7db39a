"""attnlab's tests: a package, so ``from tests.helpers import ...`` works from every folder and
``tests/widgets`` (the tests of the ``widgets`` package) is ``tests.widgets``, never ``widgets``."""
