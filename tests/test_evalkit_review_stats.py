"""Agreement and correlation statistics against the reference implementations (the krippendorff
package, scipy) and against values worked out by hand or published."""
from __future__ import annotations

import math

import krippendorff
import numpy as np
import pytest
from scipy.stats import spearmanr

from evalkit.review.stats import cohen_kappa, krippendorff_alpha, mean_ci, spearman

N = None
# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", section C: 4 coders, 12 units,
# missing values; the paper gives alpha = 0.743 nominal, 0.815 ordinal, 0.849 interval, 0.797 ratio.
PAPER = [[1, 2, 3, 3, 2, 1, 4, 1, 2, N, N, N],
         [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, N, 3],
         [N, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, N],
         [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, N]]
PUBLISHED = {"nominal": 0.743, "ordinal": 0.815, "interval": 0.849, "ratio": 0.797}


def _nan(rows):
    return np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=float)


@pytest.mark.parametrize("level", list(PUBLISHED))
def test_alpha_matches_the_paper_and_the_package(level):
    ours = krippendorff_alpha(PAPER, level)
    assert round(ours, 3) == PUBLISHED[level]
    assert ours == pytest.approx(krippendorff.alpha(reliability_data=_nan(PAPER), level_of_measurement=level), abs=1e-12)


def test_alpha_by_hand_two_coders():
    # units (1,1) (1,0) (0,0) (0,0): coincidences o00=4, o01=o10=1, o11=2; n0=5, n1=3, n=8
    # alpha = 1 - (n-1) * (o01+o10) / (2 n0 n1) = 1 - 7*2/30 = 8/15
    assert krippendorff_alpha([[1, 1, 0, 0], [1, 0, 0, 0]], "nominal") == pytest.approx(8 / 15)
    assert krippendorff_alpha([[3, 3, 3], [3, 3, 3]], "ordinal") is None          # no variation: undefined
    assert krippendorff_alpha([[1, N, 2], [N, 3, N]], "ordinal") is None          # nothing pairable
    assert krippendorff_alpha([[1, 2, 3, 4], [1, 2, 3, 4]], "ordinal") == 1.0


@pytest.mark.parametrize("seed", range(6))
def test_alpha_equals_package_on_random_ratings_with_gaps(seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(1, 6, size=40)
    data = np.clip(truth + rng.integers(-1, 2, size=(3, 40)), 1, 5).astype(float)
    data[rng.random(data.shape) < 0.25] = np.nan
    rows = [[None if math.isnan(v) else int(v) for v in r] for r in data]
    for level in ("nominal", "ordinal", "interval", "ratio"):
        assert krippendorff_alpha(rows, level) == pytest.approx(
            krippendorff.alpha(reliability_data=data, level_of_measurement=level), abs=1e-10)
    # nominal categories that are strings work as well
    labels = [[None if v is None else "abcde"[v - 1] for v in r] for r in rows]
    assert krippendorff_alpha(labels, "nominal") == pytest.approx(krippendorff_alpha(rows, "nominal"))


def test_cohen_kappa_by_hand():
    # the textbook 2x2 table: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> po=.7, pe=.5 -> kappa=.4
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    # quadratic weights by hand: pairs (1,1) (2,3) (3,3); observed sum of w*p = 1/3 (the (2,3) pair);
    # marginals a = (1/3, 1/3, 1/3), b = (1/3, 0, 2/3): expected = (8 + 3 + 4)/9 = 5/3 -> 1 - 1/5
    assert cohen_kappa([1, 2, 3], [1, 3, 3], weights="quadratic") == pytest.approx(0.8)
    assert cohen_kappa([1, 2, 3, N], [1, 2, 3, 5]) == 1.0                 # the missing pair is skipped
    assert cohen_kappa([2, 2, 2], [2, 2, 2]) is None                      # pe = 1: undefined


def test_spearman_by_hand_and_against_scipy():
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)      # 1 - 6*2/(4*15)
    assert spearman([1, 2, 3], [5, 5, 5]) is None
    rng = np.random.default_rng(1)
    x = rng.integers(1, 6, 60).tolist()                                    # ratings: many ties
    y = (np.array(x) * 0.1 + rng.random(60)).round(1).tolist()
    y[5] = None
    keep = [i for i in range(60) if y[i] is not None]
    expected = spearmanr([x[i] for i in keep], [y[i] for i in keep]).statistic
    assert spearman(x, y) == pytest.approx(expected, abs=1e-12)


def test_mean_ci():
    assert mean_ci([4, 4, 4]) == (4.0, 4.0, 4.0)
    assert mean_ci([]) == (None, None, None)
    assert mean_ci([3.0]) == (3.0, None, None)
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 1.0, 400)
    mean, low, high = mean_ci(x.tolist(), seed=7)
    assert mean == pytest.approx(x.mean())
    half = 1.96 * x.std(ddof=1) / math.sqrt(len(x))                     # the normal approximation
    assert low == pytest.approx(mean - half, abs=0.02) and high == pytest.approx(mean + half, abs=0.02)
    assert mean_ci(x.tolist(), seed=7) == (mean, low, high)              # seeded: reproducible
    # weights act like repeated items: weight 2 on the 5 gives the mean of [1, 5, 5]
    assert mean_ci([1, 5], weights=[1, 2])[0] == pytest.approx(11 / 3)
