# SPDX-License-Identifier: MIT
"""Building single-node ONNX models and running them with ONNX Runtime and onnx.reference (tests only)."""

import importlib

import numpy as np

INPUTS = {"RNN": ("X", "W", "R", "B", "sequence_lens", "initial_h"),
          "GRU": ("X", "W", "R", "B", "sequence_lens", "initial_h"),
          "LSTM": ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P")}
OUTPUTS = ("Y", "Y_h", "Y_c")
GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


def make_node(op, feeds, outputs, **attributes):
    """A node whose inputs are the keys of `feeds` (others '', trailing ones dropped); outputs as given."""
    from onnx import helper

    names = [n if feeds.get(n) is not None else "" for n in INPUTS[op]]
    while names and not names[-1]:
        names.pop()
    return helper.make_node(op, names, list(outputs), **attributes)


def make_model(node, feeds):
    """A one-node model whose graph inputs are the node's named inputs (opset 14, the first with layout)."""
    from onnx import helper

    def value_info(name, arr):
        return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(arr.dtype), arr.shape)

    inputs = [value_info(n, feeds[n]) for n in node.input if n]
    element = helper.np_dtype_to_tensor_dtype(feeds["X"].dtype)
    outputs = [helper.make_tensor_value_info(n, element, None) for n in node.output if n]
    graph = helper.make_graph([node], "g", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)


def run_ort(node, feeds):
    import onnxruntime as ort

    model = make_model(node, feeds)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {n: feeds[n] for n in node.input if n})


def run_reference(node, feeds):
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(make_model(node, feeds)).run(None, {n: feeds[n] for n in node.input if n})


def node_cases():
    """(name, node, inputs, expected outputs) of the ONNX project's own RNN, GRU and LSTM node tests."""
    cases = []
    for name in ("rnn", "gru", "lstm"):
        module = importlib.import_module("onnx.backend.test.case.node." + name)
        saved = module.expect
        module.expect = lambda node, inputs, outputs, name, **_: cases.append((name, node, inputs, outputs))
        try:
            for cls in vars(module).values():
                if isinstance(cls, type) and issubclass(cls, module.Base) and cls is not module.Base:
                    for attr in sorted(vars(cls)):
                        if attr.startswith("export"):
                            getattr(cls, attr)()
        finally:
            module.expect = saved
    return cases


def to_layout0(feeds):
    """The layout=1 inputs of `feeds` (X [N,T,I], states [N,D,H]) in layout 0."""
    out = dict(feeds)
    for name in ("X", "initial_h", "initial_c"):
        if out.get(name) is not None:
            out[name] = np.ascontiguousarray(np.swapaxes(out[name], 0, 1))
    return out


def output_to_layout1(name, value):
    """A layout-0 output (Y [T,D,N,H], Y_h/Y_c [D,N,H]) in layout 1 (Y [N,T,D,H], [N,D,H])."""
    return value.transpose(2, 0, 1, 3) if name == "Y" else value.transpose(1, 0, 2)


def random_optional_inputs(rng, feeds, op, steps, batch, directions, hidden, layout, uniform, lengths=True):
    """Adds random sequence_lens (when `lengths`; zeros included), initial_h and initial_c to `feeds`.

    uniform(*shape): random values of the inputs' dtype
    """
    if rng.random() < 0.5 and lengths:
        feeds["sequence_lens"] = rng.integers(0 if rng.random() < 0.3 else 1, steps + 1, size=batch).astype(np.int32)
    state = (batch, directions, hidden) if layout else (directions, batch, hidden)
    if rng.random() < 0.5:
        feeds["initial_h"] = uniform(*state)
    if op == "LSTM" and rng.random() < 0.5:
        feeds["initial_c"] = uniform(*state)


def random_outputs(rng, op):
    """A random non-empty choice of the operator's outputs: names, '' for those skipped, none trailing."""
    n_out = 3 if op == "LSTM" else 2
    outputs = [name if rng.random() < 0.7 else "" for name in OUTPUTS[:n_out]]
    if not any(outputs):
        k = int(rng.integers(n_out))
        outputs[k] = OUTPUTS[k]
    while not outputs[-1]:
        outputs.pop()
    return outputs
