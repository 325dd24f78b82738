"""The targets checker of ``rustfarm_gym.evaluate`` on a hand-made table."""

from __future__ import annotations

from rustfarm_gym.evaluate import Row, check_targets, targets_report


def row(scenario: str, policy: str, qos: float, rs: float, mean_rep: float = 10.0) -> Row:
    return Row(scenario, policy, [qos, qos], 0.99, 1.0, rs, 1.0, None, mean_rep, 20.0, 1.0, 0.0)


TABLE = [
    # steady: oracle reaches 99 %; the policy meets (a) and beats both baselines.
    row("steady", "pol", 0.9930, 3300.0),
    row("steady", "queueing", 0.9925, 3784.0),
    row("steady", "fixed:14", 0.9920, 3343.0),
    row("steady", "oracle", 0.9904, 2855.0),
    # diurnal: too many replica-seconds for (a); queueing trades (not beaten,
    # not dominating); cheap is dominated by nothing but not beaten either.
    row("diurnal", "pol", 0.9927, 6076.0),
    row("diurnal", "queueing", 0.9972, 6207.0),
    row("diurnal", "cheap", 0.50, 3000.0),
    row("diurnal", "oracle", 0.9902, 4517.0),
    # paper-4phase: the oracle misses 99 % -> (a) n/a; (c) checked; a
    # baseline with more QoS at fewer replica-s dominates.
    row("paper-4phase", "pol", 0.9650, 3522.0, 14.57),
    row("paper-4phase", "fixed:15", 0.9794, 3500.0, 14.54),
    row("paper-4phase", "oracle", 0.9857, 2796.0),
]


def test_check_targets_by_hand() -> None:
    checks = {c.scenario: c for c in
              check_targets(TABLE, "pol", ["queueing", "fixed:14", "cheap", "fixed:15"])}
    s = checks["steady"]
    assert s.a is True and abs(s.a_limit - 1.2 * 2855.0) < 1e-9
    assert s.b and s.not_beaten == [] and s.dominated_by == [] and s.c is None
    d = checks["diurnal"]
    assert d.a is False
    assert d.not_beaten == ["queueing", "cheap"] and d.dominated_by == []
    p = checks["paper-4phase"]
    assert p.a is None and p.c is False
    assert p.not_beaten == ["fixed:15"] and p.dominated_by == ["fixed:15"]
    text = targets_report(list(checks.values()))
    assert "summary pol: (a) 1/2, (b) 1/3, undominated 2/3, (c) 0/1" in text


def test_equal_rows_are_not_beaten_and_paper_target_can_pass() -> None:
    rows = [row("paper-4phase", "pol", 0.995, 3000.0, 14.0),
            row("paper-4phase", "twin", 0.995, 3000.0, 14.0),
            row("paper-4phase", "oracle", 0.9857, 2796.0)]
    (c,) = check_targets(rows, "pol", ["twin"])
    # An identical baseline is neither beaten nor strictly better: (b) fails,
    # and it counts as dominating (at least as good on both axes).
    assert c.not_beaten == ["twin"] and c.dominated_by == ["twin"]
    assert c.c is True
    # Less QoS than the paper or more workers: (c) fails.
    rows[0] = row("paper-4phase", "pol", 0.995, 3000.0, 14.9)
    assert check_targets(rows, "pol", [])[0].c is False
