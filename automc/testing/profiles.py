"""A device profile measured in seconds, for tests of what consumes profiles.

``full_width_profile`` times ``test_tiny`` (on the ``synthetic`` input) with three repeats and
only the full-width layer shapes in its table, so every pruned layer of a plan is priced off
the table (by the roofline): tests use it both as a real profile and as one that flags.
"""

from __future__ import annotations

from typing import Any


def full_width_profile(profile_id: str) -> Any:
    """A fresh profile of ``test_tiny`` on this machine (1 thread, 3 repeats, full width only)."""
    import torch

    from automc import compress, data, graph, models
    from automc.hardware import ProfileCase, ProfileSettings, build_profile

    torch.manual_seed(0)
    x = data.load("synthetic").train[0][0].unsqueeze(0)
    model = models.create("test_tiny", in_channels=x.shape[1]).eval()
    case = ProfileCase(name="test_tiny", model=model, example_input=x, layers=tuple(graph.layers(model, x)))
    return build_profile(
        [case],
        lambda m, p, xx: compress.apply(m, p, xx),
        ProfileSettings(
            profile_id=profile_id,
            threads=1,
            warmup=1,
            repeats=3,
            train_variants=2,
            validate=0,
            channel_fractions=(1.0,),
            rank_fractions=(1.0,),
        ),
    )
