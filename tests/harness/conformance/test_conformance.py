"""This repository's run of the conformance tests that ship in the package
(``qat_harness.conformance``): the same tests, collected here too."""
import pytest  # noqa: E402

from qat_harness.conformance.test_claims import *  # noqa: F401,F403 - the tests themselves

pytestmark = pytest.mark.slow
