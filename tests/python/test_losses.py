# SPDX-License-Identifier: MIT
"""Losses against torch: values and gradients, with and without masks, per-step and last-step targets."""

import numpy as np
import pytest

from gatecell import losses

torch = pytest.importorskip("torch")

SHAPES = [(7,), (4, 3), (5, 4, 3)]  # positions x classes: last-step [N, C], per-step [T, N, C]


def _mask(rng, positions):
    m = (rng.random(positions) < 0.6).astype(np.float64)
    m.reshape(-1)[0] = 1.0  # never empty
    return m


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("masked", [False, True])
def test_mse_matches_torch(dtype, shape, masked):
    rng = np.random.default_rng(len(shape) + 10 * masked)
    pred, target = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    mask = _mask(rng, shape[:-1]) if masked else None
    loss, grad = losses.mse(pred, target, mask)
    tp = torch.tensor(pred, requires_grad=True)
    if masked:
        m = torch.tensor(mask, dtype=tp.dtype)[..., None]
        t_loss = (((tp - torch.tensor(target)) ** 2) * m).sum() / (m.sum() * shape[-1])
    else:
        t_loss = torch.nn.functional.mse_loss(tp, torch.tensor(target))
    t_loss.backward()
    tol = 1e-6 if dtype == np.float32 else 1e-12
    assert loss == pytest.approx(t_loss.item(), rel=tol)
    assert grad.dtype == dtype and grad.shape == pred.shape
    np.testing.assert_allclose(grad, tp.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES[1:])
@pytest.mark.parametrize("masked", [False, True])
def test_cross_entropy_matches_torch(dtype, shape, masked):
    rng = np.random.default_rng(len(shape) + 10 * masked)
    logits = (3 * rng.standard_normal(shape)).astype(dtype)
    labels = rng.integers(0, shape[-1], size=shape[:-1])
    mask = _mask(rng, shape[:-1]) if masked else None
    if masked:  # labels at padded positions may be anything, even out of range
        labels = np.where(mask > 0, labels, -7)
    loss, grad = losses.cross_entropy(logits, labels, mask)
    tz = torch.tensor(logits, requires_grad=True)
    flat = tz.reshape(-1, shape[-1])
    lab = torch.tensor(labels.reshape(-1))
    if masked:
        t_loss = torch.nn.functional.cross_entropy(flat, lab, ignore_index=-7)
    else:
        t_loss = torch.nn.functional.cross_entropy(flat, lab)
    t_loss.backward()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert loss == pytest.approx(t_loss.item(), rel=tol)
    np.testing.assert_allclose(grad, tz.grad.numpy(), rtol=tol, atol=tol)


def test_length_mask_and_padded_loss_equals_per_sequence_losses():
    rng = np.random.default_rng(3)
    lengths = np.array([5, 2, 4])
    pred = rng.standard_normal((5, 3, 2))
    target = rng.standard_normal((5, 3, 2))
    mask = losses.length_mask(lengths, 5)
    assert mask.shape == (5, 3) and mask.sum() == lengths.sum()
    assert np.array_equal(losses.length_mask(lengths, 5, batch_first=True), mask.T)
    loss, _ = losses.mse(pred, target, mask.astype(np.float64))
    pieces = [np.sum((pred[:n, k] - target[:n, k]) ** 2) for k, n in enumerate(lengths)]
    assert loss == pytest.approx(sum(pieces) / (lengths.sum() * 2))


def test_loss_errors_name_the_argument():
    p = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match="target"):
        losses.mse(p, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="mask"):
        losses.mse(p, p, np.ones(2))
    with pytest.raises(ValueError, match="mask"):
        losses.mse(p, p, np.zeros(3))
    with pytest.raises(TypeError, match="pred"):
        losses.mse(np.zeros((3, 2), np.int64), p)
    with pytest.raises(ValueError, match="labels"):
        losses.cross_entropy(p, np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="labels"):
        losses.cross_entropy(p, np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="labels"):
        losses.cross_entropy(p, np.zeros(4, np.int64))
