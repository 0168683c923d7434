from __future__ import annotations

import signalbox
from signalbox import metrics


def test_all_is_sorted_and_resolves() -> None:
    assert signalbox.__all__ == sorted(signalbox.__all__)
    for name in signalbox.__all__:
        assert hasattr(signalbox, name), name


def test_metrics_client_api_is_reachable_from_the_package() -> None:
    assert metrics.__all__ == sorted(metrics.__all__)
    for name in metrics.__all__:
        assert callable(getattr(metrics, name)), name
