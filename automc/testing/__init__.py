"""Test helpers shipped with the package: tiny models (``automc.testing.models``).

The tiny models are registered in the model zoo as ``test_*`` and are created with
``automc.models.create("test_tiny")`` like any other model.
"""
