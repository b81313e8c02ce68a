"""A trained tiny reference R-JEPA on synthetic student `ref` (width 16) and the latents of `new` (width 24)."""

from __future__ import annotations

import pytest

from tests.core.transfer.synthetic import train_reference, two_students

WIDTHS = {"ref": 16, "new": 24}


@pytest.fixture(scope="session")
def students():
    return two_students(240, WIDTHS)


@pytest.fixture(scope="session")
def reference(students, tmp_path_factory):
    """LoadedCheckpoint of the reference trained on `ref` latents (do not mutate it)."""
    return train_reference(students["ref"], tmp_path_factory.mktemp("reference"))
