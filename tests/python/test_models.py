# SPDX-License-Identifier: MIT
"""Embedding, Dropout, LastStep and Sequential: finite differences, torch twins, state dicts, data helpers."""

import numpy as np
import pytest

import gatecell as gc
from gatecell import data, losses
from helpers import central_difference


def _model(kind, batch_first, bidirectional, embed):
    rec = {"rnn": gc.RNN, "lstm": gc.LSTM, "gru": gc.GRU}[kind]
    mods = []
    if embed:
        mods.append(("embed", gc.Embedding(6, 3, dtype=np.float64, seed=1)))
    mods += [("rnn", rec(3, 4, num_layers=2, batch_first=batch_first, bidirectional=bidirectional,
                         dtype=np.float64, seed=2)),
             ("drop", gc.Dropout(0.0)),
             ("mid", gc.Linear(4 * (1 + bidirectional), 3, dtype=np.float64, seed=3)),
             ("rnn2", rec(3, 4, batch_first=batch_first, dtype=np.float64, seed=4)),
             ("last", gc.LastStep()),
             ("head", gc.Linear(4, 2, dtype=np.float64, seed=5))]
    return gc.Sequential(mods)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("embed", [False, True])
def test_sequential_gradients_by_finite_differences(kind, batch_first, bidirectional, embed):
    rng = np.random.default_rng([len(kind), batch_first, bidirectional, embed])
    model = _model(kind, batch_first, bidirectional, embed)
    T, N = 5, 3
    shape = (N, T) if batch_first else (T, N)
    x = rng.integers(0, 6, size=shape) if embed else rng.standard_normal(shape + (3,))
    lengths = np.array([5, 2, 4])
    target = rng.standard_normal((N, 2))

    def loss_of():
        return losses.mse(model(x, lengths=lengths), target)[0]

    model.zero_grad()
    _, dpred = losses.mse(model(x, lengths=lengths), target)
    dx = model.backward(dpred)
    for name, p in model.parameters().items():
        g = model.grads[name]
        flat = p.reshape(-1)
        for k in rng.choice(flat.size, size=min(4, flat.size), replace=False):
            numeric = central_difference(loss_of, flat, k)
            assert g.reshape(-1)[k] == pytest.approx(numeric, rel=1e-5, abs=1e-8), name
    if embed:
        assert dx is None
    else:
        for idx in [tuple(rng.integers(0, s) for s in x.shape) for _ in range(4)]:
            assert dx[idx] == pytest.approx(central_difference(loss_of, x, idx), rel=1e-5, abs=1e-8)


def test_sequential_matches_torch_modules_and_state_dict_names():
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(7, 3)
            self.rnn = torch.nn.LSTM(3, 5, num_layers=2, batch_first=True)
            self.head = torch.nn.Linear(5, 4)

        def forward(self, x, lengths):
            out, _ = self.rnn(self.embed(x))
            return self.head(out[torch.arange(x.shape[0]), lengths - 1])

    net = Net().double()
    ours = gc.Sequential([("embed", gc.Embedding(7, 3, dtype=np.float64)),
                          ("rnn", gc.LSTM(3, 5, num_layers=2, batch_first=True, dtype=np.float64)),
                          ("last", gc.LastStep()), ("head", gc.Linear(5, 4, dtype=np.float64))])
    assert sorted(ours.state_dict()) == sorted(net.state_dict())
    ours.load_state_dict(net.state_dict())
    rng = np.random.default_rng(0)
    x = rng.integers(0, 7, size=(3, 6))
    lengths = np.array([6, 6, 6])
    labels = np.array([1, 3, 0])
    logits = ours(x, lengths=lengths)
    loss, dlogits = losses.cross_entropy(logits, labels)
    ours.backward(dlogits)
    t_logits = net(torch.tensor(x), torch.tensor(lengths))
    t_loss = torch.nn.functional.cross_entropy(t_logits, torch.tensor(labels))
    t_loss.backward()
    np.testing.assert_allclose(logits, t_logits.detach().numpy(), rtol=1e-10, atol=1e-12)
    for name, p in net.named_parameters():
        np.testing.assert_allclose(ours.grads[name], p.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


def test_sequential_config_round_trip_and_errors():
    model = _model("gru", True, True, True)
    cfg = model.config()
    assert cfg["type"] == "Sequential"
    assert [m["name"] for m in cfg["modules"]] == ["embed", "rnn", "drop", "mid", "rnn2", "last", "head"]
    assert cfg["modules"][2] == {"name": "drop", "type": "Dropout", "p": 0.0}
    assert cfg["modules"][5] == {"name": "last", "type": "LastStep"}
    twin = gc.Sequential.from_config(cfg)
    assert twin.config() == cfg
    twin.load_state_dict(model.state_dict())
    x = np.random.default_rng(0).integers(0, 6, size=(2, 4))
    np.testing.assert_array_equal(twin.eval()(x), model.eval()(x))
    assert gc.module_from_config(cfg).config() == cfg
    with pytest.raises(ValueError, match="missing keys"):
        model.load_state_dict({k: v for k, v in model.state_dict().items() if k != "head.bias"})
    bad = model.state_dict()
    bad["head.weight"] = np.zeros((9, 9))
    before = model.state_dict()
    with pytest.raises(ValueError, match="head.weight"):
        model.load_state_dict(bad)
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="unique"):
        gc.Sequential([("a", gc.Linear(2, 2)), ("a", gc.Linear(2, 2))])
    with pytest.raises(TypeError, match="dtype"):
        gc.Sequential([gc.Linear(2, 2), gc.Linear(2, 2, dtype=np.float64)])
    with pytest.raises(ValueError, match="unknown module type"):
        gc.Sequential.from_config({"type": "Sequential", "modules": [{"name": "x", "type": "Conv"}]})


def test_embedding_padding_and_dropout_like_torch():
    torch = pytest.importorskip("torch")
    emb = gc.Embedding(5, 3, padding_idx=0, dtype=np.float64, seed=0)
    assert not emb.parameters()["weight"][0].any()
    t = torch.nn.Embedding(5, 3, padding_idx=0).double()
    t.load_state_dict({k: torch.tensor(v) for k, v in emb.state_dict().items()})
    idx = np.array([[0, 1, 1], [4, 0, 2]])
    dout = np.random.default_rng(1).standard_normal((2, 3, 3))
    emb(idx)
    emb.backward(dout)
    out = t(torch.tensor(idx))
    (out * torch.tensor(dout)).sum().backward()
    np.testing.assert_allclose(emb.grads["weight"], t.weight.grad.numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="idx"):
        emb(np.array([5]))
    drop = gc.Dropout(0.25, seed=0)
    x = np.ones((200, 50), np.float32)
    y = drop(x)
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.02
    np.testing.assert_array_equal(drop.backward(x), y)
    assert np.array_equal(drop.eval()(x), x)


def test_last_step_picks_each_sequence_end():
    x = np.arange(4 * 3 * 2, dtype=np.float32).reshape(4, 3, 2)
    last = gc.LastStep()
    np.testing.assert_array_equal(last(x, lengths=np.array([4, 1, 2])), x[[3, 0, 1], [0, 1, 2]])
    np.testing.assert_array_equal(last(x), x[3])
    xb = np.ascontiguousarray(x.transpose(1, 0, 2))
    np.testing.assert_array_equal(last(xb, lengths=np.array([2, 3, 4]), batch_first=True), xb[[0, 1, 2], [1, 2, 3]])
    d = last.backward(np.ones((3, 2), np.float32))
    assert d.shape == xb.shape and d.sum() == 6 and d[0, 1].all() and d[2, 3].all()
    with pytest.raises(ValueError, match="lengths"):
        last(x, lengths=np.array([5, 1, 1]))


def test_pad_minibatches_and_split():
    seqs = [np.ones((3, 2)), 2 * np.ones((1, 2)), 3 * np.ones((4, 2))]
    x, lengths = data.pad_sequences(seqs)
    assert x.shape == (4, 3, 2) and lengths.tolist() == [3, 1, 4]
    assert x[1:, 1].sum() == 0 and x[:, 2].sum() == 24
    xb, _ = data.pad_sequences(seqs, batch_first=True, padding_value=-1, dtype=np.float32)
    assert xb.shape == (3, 4, 2) and xb.dtype == np.float32 and xb[1, 1, 0] == -1
    # the padded batch through an RNN equals each sequence alone
    rnn = gc.GRU(2, 3, dtype=np.float64, seed=0)
    out, h = rnn(x, lengths=lengths)
    for n, s in enumerate(seqs):
        _, h_alone = rnn(s[:, None, :])
        np.testing.assert_allclose(h[:, n], h_alone[:, 0], rtol=1e-12)
    with pytest.raises(ValueError, match="sequences"):
        data.pad_sequences([np.ones((2, 2)), np.ones((2, 3))])

    X, Y = np.arange(10)[:, None], np.arange(10) * 2
    seen = []
    for bx, by in data.minibatches((X, Y), 3, rng=0):
        assert np.array_equal(by, 2 * bx[:, 0]) and len(bx) <= 3
        seen += bx[:, 0].tolist()
    assert sorted(seen) == list(range(10)) and seen != list(range(10))
    assert [len(b[0]) for b in data.minibatches((X, Y), 3, shuffle=False, drop_last=True)] == [3, 3, 3]
    train, val = data.train_val_split((X, Y), 0.3, seed=1)
    assert len(train[0]) == 7 and len(val[0]) == 3
    assert sorted(train[0][:, 0].tolist() + val[0][:, 0].tolist()) == list(range(10))
    with pytest.raises(ValueError, match="data"):
        data.train_val_split((X, Y[:5]))
    with pytest.raises(ValueError, match="val_fraction"):
        data.train_val_split((X, Y), 0.0)
