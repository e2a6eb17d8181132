# SPDX-License-Identifier: MIT
"""Optimizers, clipping and schedules against torch.optim fed identical gradients."""

import numpy as np
import pytest

import gatecell as gc
from gatecell import optim

torch = pytest.importorskip("torch")


def _twins(dtype, seed):
    """A gatecell model and torch tensors holding the same parameters."""
    model = gc.Sequential([("rnn", gc.GRU(3, 5, dtype=dtype, seed=seed)), ("head", gc.Linear(5, 2, dtype=dtype,
                                                                                            seed=seed + 1))])
    tparams = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in model.parameters().items()}
    return model, tparams


def _run(make_ours, make_theirs, dtype, steps=6, seed=0, clip=None):
    model, tparams = _twins(dtype, seed)
    names = list(tparams)
    ours = make_ours(model)
    theirs = make_theirs([tparams[k] for k in names])
    rng = np.random.default_rng(seed + 100)
    for _ in range(steps):
        ours.zero_grad()
        theirs.zero_grad()
        for k in names:
            g = rng.standard_normal(tparams[k].shape).astype(dtype)
            model.grads[k][...] = g
            tparams[k].grad = torch.tensor(g.copy())
        if clip is not None:
            n_ours = optim.clip_grad_norm(model, clip)
            n_theirs = torch.nn.utils.clip_grad_norm_([tparams[k] for k in names], clip)
            assert n_ours == pytest.approx(float(n_theirs), rel=1e-5)
        ours.step()
        theirs.step()
    tol = 2e-5 if dtype == np.float32 else 1e-12
    for k in names:
        np.testing.assert_allclose(model.parameters()[k], tparams[k].detach().numpy(), rtol=tol, atol=tol,
                                   err_msg=k)


SGD_OPTIONS = [dict(), dict(momentum=0.9), dict(momentum=0.9, nesterov=True), dict(momentum=0.5, dampening=0.3),
               dict(weight_decay=0.1), dict(momentum=0.9, nesterov=True, weight_decay=0.05)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", SGD_OPTIONS)
def test_sgd_matches_torch(dtype, options):
    _run(lambda m: optim.SGD(m, lr=0.05, **options), lambda p: torch.optim.SGD(p, lr=0.05, **options), dtype)


ADAM_OPTIONS = [dict(), dict(betas=(0.8, 0.99)), dict(weight_decay=0.1), dict(amsgrad=True),
                dict(eps=1e-3, weight_decay=0.02, amsgrad=True)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", ADAM_OPTIONS)
@pytest.mark.parametrize("kind", ["Adam", "AdamW"])
def test_adam_and_adamw_match_torch(dtype, options, kind):
    _run(lambda m: getattr(optim, kind)(m, lr=0.01, **options),
         lambda p: getattr(torch.optim, kind)(p, lr=0.01, **options), dtype)


@pytest.mark.parametrize("max_norm", [0.5, 3.0, 1e3])
def test_clip_grad_norm_matches_torch(max_norm):
    _run(lambda m: optim.Adam(m, lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01), np.float64, clip=max_norm)


def _torch_lrs(make_sched, steps):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = make_sched(opt)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(steps):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def _our_lrs(make_sched, steps):
    opt = optim.SGD(gc.Linear(1, 1), lr=0.1)
    sched = make_sched(opt)
    lrs = [opt.lr]
    for _ in range(steps):
        opt.step()
        lrs.append(sched.step())
    return lrs


def test_step_cosine_and_warmup_schedules_match_torch():
    sch = torch.optim.lr_scheduler
    cases = [
        (lambda o: optim.StepLR(o, 3, gamma=0.5), lambda o: sch.StepLR(o, 3, gamma=0.5)),
        (lambda o: optim.CosineLR(o, 10, min_lr=0.01), lambda o: sch.CosineAnnealingLR(o, 10, eta_min=0.01)),
        (lambda o: optim.WarmupLR(o, 4, start_factor=0.25), lambda o: sch.LinearLR(o, 0.25, total_iters=4)),
        (lambda o: optim.WarmupLR(o, 4, start_factor=0.1, after=(optim.CosineLR, {"total_steps": 8})),
         lambda o: sch.SequentialLR(o, [sch.LinearLR(o, 0.1, total_iters=4), sch.CosineAnnealingLR(o, 8)], [4])),
    ]
    for ours, theirs in cases:
        np.testing.assert_allclose(_our_lrs(ours, 10), _torch_lrs(theirs, 10), rtol=1e-12, atol=1e-15)


def test_optimizer_argument_errors():
    lin = gc.Linear(2, 2)
    with pytest.raises(TypeError, match="modules"):
        optim.SGD([object()], lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        optim.SGD(lin, lr=-1.0)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(lin, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(lin, betas=(0.9, 1.5))
    with pytest.raises(TypeError, match="optimizer"):
        optim.StepLR(object(), 2)


def test_zero_grad_clears_every_module():
    a, b = gc.Linear(2, 3), gc.LSTM(2, 3)
    for m in (a, b):
        for g in m.grads.values():
            g.fill(1.0)
    optim.Adam([a, b]).zero_grad()
    assert all(not g.any() for m in (a, b) for g in m.grads.values())
