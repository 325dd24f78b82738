"""The judging rules of :mod:`rustfarm_gym.devset` (pure logic)."""

from rustfarm_gym.devset import cadence_args, dominates, summary


def test_dominance_needs_a_margin_on_one_axis_and_no_loss_on_the_other():
    # More than 0.2 points better at no more replica-seconds.
    assert dominates(90.0, 100.0, 90.3, 100.0)
    assert not dominates(90.0, 100.0, 90.2, 100.0)
    assert not dominates(90.0, 100.0, 95.0, 100.1)
    # More than 1 % cheaper at no less QoS.
    assert dominates(90.0, 100.0, 90.0, 98.9)
    assert not dominates(90.0, 100.0, 90.0, 99.5)
    assert not dominates(90.0, 100.0, 89.9, 50.0)


def test_cadences_map_to_farmctl_flags():
    assert cadence_args("8") == []
    assert cadence_args("2") == ["--interval", "2"]
    assert cadence_args("2/8") == ["--interval", "2", "--window", "8"]


def test_summary_counts_means_ratios_and_undominated_pairs():
    pairs = {
        ("a", "8"): {"new": (95.0, 90.0), "mpc": (94.0, 100.0)},
        ("b", "8"): {"new": (80.0, 120.0), "mpc": (85.0, 100.0)},
    }
    rows = {p: (q, rs, und) for p, q, rs, und in summary(pairs, ["new", "mpc"], ["mpc"], "mpc")}
    assert rows["new"] == (87.5, 1.05, 1)
    assert rows["mpc"] == (89.5, 1.0, 2)
