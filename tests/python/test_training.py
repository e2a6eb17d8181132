# SPDX-License-Identifier: MIT
"""Trainer (loss goes down, validation, early stopping, checkpoints) and torch interop."""

import json

import numpy as np
import pytest

import gatecell as gc
from gatecell import interop, training
from helpers import read_safetensors

torch = pytest.importorskip("torch")


def _regression_data(n=96, steps=6, seed=0):
    """y = the mean of each (padded) sequence's valid steps: needs the recurrent state and the lengths."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, steps, 1)).astype(np.float32)
    lengths = rng.integers(2, steps + 1, size=n)
    for k, n_k in enumerate(lengths):
        x[k, n_k:] = 0
    y = (x.sum(axis=1) / lengths[:, None]).astype(np.float32)
    return x, y, lengths


def _model(batch_first=True, seed=0):
    return gc.Sequential([("rnn", gc.GRU(1, 12, batch_first=batch_first, seed=seed)), ("last", gc.LastStep()),
                          ("head", gc.Linear(12, 1, seed=seed + 1))])


@pytest.mark.parametrize("batch_first", [True, False])
def test_short_training_run_lowers_the_loss(batch_first):
    data = _regression_data()
    train, val = gc.data.train_val_split(data, 0.25)
    trainer = gc.Trainer(_model(batch_first), lr=0.01, batch_size=16, progress=False, clip_norm=1.0)
    before = trainer.evaluate(val)
    hist = trainer.fit(train, val, steps=60)
    assert len(hist["loss"]) == 60 and hist["step"][-1] == 60
    assert hist["val_loss"] and min(hist["val_loss"]) < 0.5 * before
    assert np.mean(hist["loss"][-10:]) < 0.5 * np.mean(hist["loss"][:10])
    assert trainer.evaluate(val) == pytest.approx(min(hist["val_loss"]), rel=1e-5)  # best weights restored
    pred = trainer.predict(val[0], val[2])
    assert pred.shape == val[1].shape


def test_per_step_targets_with_masks_and_cross_entropy():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, size=(64, 7))
    y = np.roll(x, 1, axis=1)  # predict the previous token: needs one step of memory
    lengths = rng.integers(3, 8, size=64)
    model = gc.Sequential([("embed", gc.Embedding(4, 6, seed=0)), ("rnn", gc.LSTM(6, 16, seed=1)),
                           ("head", gc.Linear(16, 4, seed=2))])  # time-major: the Trainer transposes
    trainer = gc.Trainer(model, loss="cross_entropy", lr=0.02, batch_size=16, progress=False)
    first = trainer.evaluate((x, y, lengths))
    trainer.fit((x, y, lengths), steps=80)
    assert trainer.evaluate((x, y, lengths)) < 0.6 * first


def test_early_stopping_history_and_schedule():
    data = _regression_data(n=32)
    model = _model()
    opt = gc.optim.SGD(model, lr=0.0)  # learns nothing, so validation never improves after the first
    sched = gc.optim.StepLR(opt, 5)
    trainer = gc.Trainer(model, opt, batch_size=8, progress=False, eval_every=2, patience=3, schedule=sched)
    hist = trainer.fit(data, data, steps=100)
    assert trainer.stopped_early and hist["val_step"] == [2, 4, 6, 8]
    assert len(hist["loss"]) == 8 and len(hist["lr"]) == 8 and len(hist["grad_norm"]) == 8
    with pytest.raises(ValueError, match="loss"):
        gc.Trainer(model, loss="hinge")
    with pytest.raises(TypeError, match="model"):
        gc.Trainer(object())


def test_trainer_checkpoint_loads_into_torch(monkeypatch, tmp_path):
    data = _regression_data(n=32)
    model = _model()
    path = str(tmp_path / "best.safetensors")
    gc.Trainer(model, batch_size=8, progress=False, checkpoint=path).fit(data, data, steps=8)
    arrays, meta = read_safetensors(path)
    state = {k: torch.from_numpy(v) for k, v in arrays.items()}
    cfg = json.loads(meta["gatecell_model"])
    assert cfg["type"] == "Sequential" and [m["name"] for m in cfg["modules"]] == ["rnn", "last", "head"]

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.GRU(1, 12, batch_first=True)
            self.head = torch.nn.Linear(12, 1)

    net = Net()
    net.load_state_dict(state)  # strict: exactly torch's names and shapes
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(net.state_dict()[k].numpy(), v)
    rebuilt = gc.Sequential.from_config(cfg)
    rebuilt.load_state_dict(state)
    x = data[0][:4]
    np.testing.assert_array_equal(rebuilt.eval()(x, lengths=data[2][:4]), model.eval()(x, lengths=data[2][:4]))


def test_progress_bar_falls_back_without_tqdm():
    bar = training.progress_bar(3, "x", enabled=False)
    bar.update()
    bar.set_postfix({"loss": 1})
    bar.close()


TORCH_MODULES = [
    lambda: torch.nn.RNN(3, 4, num_layers=2, nonlinearity="relu", bidirectional=True),
    lambda: torch.nn.LSTM(3, 5, num_layers=2, proj_size=2, batch_first=True),
    lambda: torch.nn.GRU(3, 4, bias=False).double(),
    lambda: torch.nn.RNNCell(3, 4, nonlinearity="tanh"),
    lambda: torch.nn.LSTMCell(3, 4).double(),
    lambda: torch.nn.GRUCell(3, 4),
    lambda: torch.nn.Linear(3, 2),
    lambda: torch.nn.Embedding(7, 3, padding_idx=1),
]


@pytest.mark.parametrize("make", TORCH_MODULES)
def test_from_torch_and_back(make):
    torch.manual_seed(0)
    tm = make().eval()
    ours = gc.from_torch(tm)
    dtype = next(tm.parameters()).dtype
    name = type(tm).__name__
    if name == "Embedding":
        x = np.array([[1, 2], [6, 0]])
        tx = torch.tensor(x)
    else:
        shape = {"LSTM": (2, 5, 3)}.get(name, (5, 2, 3)) if "Cell" not in name and name != "Linear" else (2, 3)
        x = np.random.default_rng(0).standard_normal(shape).astype(ours.dtype)
        tx = torch.tensor(x, dtype=dtype)
    with torch.no_grad():
        expected = tm(tx)
    got = ours.eval()(x)
    first = lambda r: r[0] if isinstance(r, tuple) else r  # noqa: E731
    tol = 1e-5 if ours.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(first(got), first(expected).numpy(), rtol=tol, atol=tol)
    back = ours.to_torch()
    assert type(back) is type(tm)
    for k, v in tm.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def test_interop_errors():
    with pytest.raises(TypeError, match="module"):
        gc.from_torch(torch.nn.Conv1d(2, 2, 1))
    with pytest.raises(TypeError, match="module"):
        gc.from_torch(object())
    with pytest.raises(ValueError, match="linear_before_reset"):
        gc.GRU(2, 3, linear_before_reset=False).to_torch()
    with pytest.raises(TypeError, match="Sequential"):
        interop.to_torch(_model())


def test_sequential_checkpoint_round_trip(tmp_path):
    """gc.save / gc.load rebuild a composed model exactly, and torch reads the same tensors."""
    model = gc.Sequential([("embed", gc.Embedding(10, 4, seed=0)), ("rnn", gc.GRU(4, 6, num_layers=2, seed=1)),
                           ("drop", gc.Dropout(0.2)), ("last", gc.LastStep()), ("head", gc.Linear(6, 3, seed=2))])
    path = tmp_path / "model.safetensors"
    gc.save(path, model)
    twin = gc.load(path)
    assert twin.config() == model.config()
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(twin.state_dict()[k], v)
    tokens = np.random.default_rng(0).integers(0, 10, size=(7, 2))
    model.eval(), twin.eval()
    np.testing.assert_array_equal(model(tokens), twin(tokens))
