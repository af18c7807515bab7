# The real HTTP receiver of the dispatch tests, for the worker tests here too.
from tests.dispatch.conftest import receiver_factory  # noqa: F401
