import numpy as np
import pytest

from bench.splits import make_split, parse_scenario

Y = np.repeat(np.arange(10), 100)
YT = np.repeat(np.arange(10), 30)


@pytest.mark.parametrize("scenario", ["random:0.1", "class:3", "sequential:3x0.05"])
def test_split_disjoint_and_covering(scenario):
    s = make_split(Y, YT, parse_scenario(scenario), seed=0, n_val=50)
    parts = [s.val, s.forget, s.retain]
    for i in range(3):
        for j in range(i + 1, 3):
            assert len(np.intersect1d(parts[i], parts[j])) == 0
    assert len(np.concatenate(parts)) == len(Y)
    assert len(np.unique(s.test)) == len(YT)
    assert np.array_equal(np.sort(np.concatenate(s.requests)), s.forget)


def test_split_reproducible_and_seed_dependent():
    a = make_split(Y, YT, parse_scenario("random:0.1"), seed=3, n_val=50)
    b = make_split(Y, YT, parse_scenario("random:0.1"), seed=3, n_val=50)
    c = make_split(Y, YT, parse_scenario("random:0.1"), seed=4, n_val=50)
    for k in ("val", "forget", "retain", "test"):
        assert np.array_equal(getattr(a, k), getattr(b, k))
    assert not np.array_equal(a.forget, c.forget)
    # pinned: the same inputs give the same indices on any machine (numpy's PCG64 is portable)
    assert a.forget[:5].tolist() == [5, 39, 52, 59, 70] and a.val[:3].tolist() == [1, 3, 8]


def test_random_fraction_and_class_scenarios():
    s = make_split(Y, YT, parse_scenario("random:0.1"), seed=0, n_val=50)
    assert len(s.forget) == round(0.1 * (len(Y) - 50))
    c = make_split(Y, YT, parse_scenario("class:3"), seed=0, n_val=50)
    assert set(Y[c.forget]) == {3} and not np.any(Y[c.retain] == 3)


def test_balanced_subset_is_fixed_across_seeds():
    a = make_split(Y, YT, parse_scenario("random:0.1"), seed=0, n_val=20, n_train=200, n_test=100)
    b = make_split(Y, YT, parse_scenario("random:0.1"), seed=1, n_val=20, n_train=200, n_test=100)
    assert np.array_equal(np.sort(np.concatenate([a.val, a.members])),
                          np.sort(np.concatenate([b.val, b.members])))
    assert np.bincount(Y[np.concatenate([a.val, a.members])]).tolist() == [22] * 10
    assert np.bincount(YT[a.test]).tolist() == [10] * 10 and np.array_equal(a.test, b.test)


@pytest.mark.parametrize("bad", ["random:1.5", "random:0", "class:x", "sequential:3x0.5", "nope:1"])
def test_bad_scenarios_name_the_fix(bad):
    with pytest.raises(ValueError, match="use random:<frac>"):
        parse_scenario(bad)
