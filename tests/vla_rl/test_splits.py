import pytest

from vla_rl.splits import SPLITS, check_seeds, split_of, split_seeds


def test_splits_are_disjoint():
    names = list(SPLITS)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            ra, rb = SPLITS[a], SPLITS[b]
            assert ra.stop <= rb.start or rb.stop <= ra.start, (a, b)


def test_split_seeds_stay_inside_and_roundtrip():
    for name in SPLITS:
        seeds = split_seeds(name, 100, start=5)
        assert len(set(seeds)) == 100
        assert all(split_of(s) == name for s in seeds)


def test_wrong_split_use_is_refused():
    with pytest.raises(ValueError, match="not 'train' seeds"):
        check_seeds(split_seeds("test", 3), "train")
    with pytest.raises(ValueError, match="unknown split"):
        split_seeds("holdout", 1)
    with pytest.raises(ValueError, match="lies in no split"):
        split_of(-1)
    with pytest.raises(ValueError, match="holds"):
        split_seeds("val", len(SPLITS["val"]) + 1)
