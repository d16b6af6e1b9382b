"""The reliability tests share the screening fixtures (a hospital world, image builders,
the model the worker runs)."""

from tests.screening.conftest import film, screening_model_dir, world  # noqa: F401
