"""Source-balanced sampling and the source-cue augmentations of ml.train."""

from __future__ import annotations

import numpy as np

from ml.train import balanced_batches, balanced_weights, make_augmenter, weight_table


def _toy():
    # covid: 400 images from a big site, 25 from a small one;
    # normal: 100 from the big site, 100 from another.
    y = np.array([0] * 425 + [2] * 200)
    src = np.array(["big"] * 400 + ["small"] * 25 + ["big"] * 100 + ["other"] * 100)
    return y, src


def test_weights_balance_classes_and_temper_sources():
    y, src = _toy()
    w = balanced_weights(y, src, power=0.5)
    assert np.isclose(w.mean(), 1.0)
    # every class present carries the same total weight
    assert np.isclose(w[y == 0].sum(), w[y == 2].sum())
    # within covid, source shares go with sqrt(n): 20 : 5
    big, small = w[(y == 0) & (src == "big")].sum(), w[(y == 0) & (src == "small")].sum()
    assert np.isclose(big / small, 20 / 5)
    # power 1 is plain class balance (one weight per class); power 0 equal sources
    w1 = balanced_weights(y, src, power=1.0)
    assert len(np.unique(np.round(w1[y == 0], 12))) == 1
    w0 = balanced_weights(y, src, power=0.0)
    assert np.isclose(w0[(y == 0) & (src == "big")].sum(), w0[(y == 0) & (src == "small")].sum())
    # power 2 favours the largest source: shares go with n**2, 400**2 : 25**2
    w2 = balanced_weights(y, src, power=2.0)
    assert np.isclose(w2[(y == 0) & (src == "big")].sum() / w2[(y == 0) & (src == "small")].sum(), 256)
    assert np.isclose(w2[y == 0].sum(), w2[y == 2].sum())
    table = weight_table(y, src, w)
    assert table["covid"]["share"] == 0.5 and table["pneumonia"]["share"] == 0.0
    assert np.isclose(table["covid"]["sources"]["small"], 0.5 * 5 / 25, atol=1e-3)


def test_batches_follow_the_weights_and_the_seed():
    y, src = _toy()
    x = np.arange(len(y), dtype=np.float16).reshape(-1, 1, 1, 1)
    w = balanced_weights(y, src)
    ds = balanced_batches(x, y, w, batch_size=50, steps=200, seed=3)
    assert len(ds) == 200
    xb, yb = ds[0]
    assert xb.shape == (50, 1, 1, 1) and xb.dtype == np.float32
    assert np.array_equal(y[xb[:, 0, 0, 0].astype(int)], yb)
    drawn = ds.order
    small_share = np.isin(drawn, np.flatnonzero(src == "small")).mean()
    assert abs(small_share - 0.1) < 0.02  # expected 0.5 * 5/25
    assert abs((y[drawn] == 0).mean() - 0.5) < 0.03
    again = balanced_batches(x, y, w, batch_size=50, steps=200, seed=3)
    assert np.array_equal(again.order, drawn)
    ds.on_epoch_end()
    assert not np.array_equal(ds.order, drawn)  # a fresh draw every epoch


def test_augmenter_keeps_range_and_is_off_at_inference():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 0.8, size=(16, 32, 32, 1)).astype(np.float32)
    aug = make_augmenter(seed=5)
    assert np.allclose(np.asarray(aug(x, training=False)), x)
    y = np.asarray(aug(x, training=True))
    assert y.shape == x.shape and y.min() >= 0.0 and y.max() <= 1.0
    assert not np.allclose(y, x)
    # the border mask paints bars and corner patches one flat grey per image
    mask = next(layer for layer in aug.layers if type(layer).__name__ == "RandomBorderMask")
    x = rng.uniform(0.0, 1.0, size=(64, 32, 32, 1)).astype(np.float32)
    m = np.asarray(mask(x, training=True))
    changed = m != x
    assert 0.02 < changed.mean() < 0.5
    for img, where in zip(m[..., 0], changed[..., 0]):
        if where.any():
            assert np.ptp(img[where]) < 1e-6
