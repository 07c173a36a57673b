"""The restore drills: the local one for real (tests/drill.py, `make dr-drill`)."""

import pytest

from tests import drill


@pytest.mark.e2e
def test_local_drill_restores_to_just_before_the_disaster_within_the_bounds(tmp_path):
    report = drill.run(tmp_path)
    print("\n" + "\n".join(report.lines()))
    assert report.failures == []
    assert report.acknowledged_before > 0 and report.segments_replayed > 0
    assert report.drillcheck.startswith("drillcheck: passed")
    assert report.rto <= drill.MAX_RTO and report.rpo <= drill.MAX_RPO
