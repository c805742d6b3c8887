"""ONNX Runtime's own model format (``.ort`` flatbuffers): read it, fold weights, re-emit ONNX.

``read_ort_graph`` parses the main graph with the flatbuffer readers that ship inside the
``onnxruntime`` wheel (``onnxruntime.tools.ort_format_model``): initializers as numpy arrays,
nodes with their attributes, graph inputs/outputs and opsets. ``fold`` evaluates a tensor that
the graph computes from initializers only (the ``Cast -> Mul -> Add`` chains that dequantize
int8 weights), with numpy float32 arithmetic, so the result equals what onnxruntime computes.

``to_onnx_bytes`` writes the same graph as a plain ONNX ``ModelProto`` (a minimal protobuf
encoder; no ``onnx`` package needed) and can add any intermediate value as a graph output, so
onnxruntime can run the original graph and return the hidden states inside it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import UserError

# ONNX TensorProto data types (the ORT format uses the same numbers)
_NP = {
    1: np.float32,
    2: np.uint8,
    3: np.int8,
    6: np.int32,
    7: np.int64,
    10: np.float16,
    11: np.float64,
}
_SCALAR_ATTR = {1: "F", 2: "I", 3: "S"}  # AttributeType FLOAT, INT, STRING
_LIST_ATTR = {6: ("Floats", "FloatsLength"), 7: ("Ints", "IntsLength")}


class OrtFormatError(UserError, ValueError):
    """The .ort file is not a model this reader understands."""


@dataclass
class OrtNode:
    op_type: str
    domain: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, tuple[int, object]]  # name -> (ONNX AttributeType, value)


@dataclass
class OrtGraph:
    path: str
    ir_version: int
    opsets: list[tuple[str, int]]
    inputs: list[str]
    outputs: list[str]
    initializers: dict[str, np.ndarray]
    nodes: list[OrtNode]
    producer: dict[str, OrtNode] = field(default_factory=dict)  # output name -> node

    def node(self, output: str) -> OrtNode:
        """The node that computes `output`."""
        if output not in self.producer:
            raise OrtFormatError(f"{self.path}: no node computes {output!r}")
        return self.producer[output]

    def fold(self, name: str) -> np.ndarray:
        """Value of `name` computed from initializers only (Cast/Mul/Add/Sub/Transpose/Reshape)."""
        if name in self.initializers:
            return self.initializers[name]
        n = self.node(name)
        args = [self.fold(i) for i in n.inputs if i]
        if n.op_type == "Cast":
            return args[0].astype(_NP[int(n.attrs["to"][1])])
        if n.op_type in ("Mul", "Add", "Sub"):
            op = {"Mul": np.multiply, "Add": np.add, "Sub": np.subtract}[n.op_type]
            return op(args[0], args[1]).astype(np.result_type(args[0], args[1]))
        if n.op_type == "Transpose":
            return args[0].transpose(n.attrs["perm"][1])
        if n.op_type == "Reshape":
            return args[0].reshape(args[1])
        raise OrtFormatError(f"{self.path}: cannot fold {name!r}, computed by {n.op_type}")


def _str(b: bytes | None) -> str:
    return b.decode("utf-8") if b else ""


def _tensor(t, where: str) -> np.ndarray:
    dtype = _NP.get(t.DataType())
    if dtype is None:
        raise OrtFormatError(
            f"{where}: initializer {_str(t.Name())!r} has data type {t.DataType()}"
        )
    dims = [t.Dims(j) for j in range(t.DimsLength())]
    raw = t.RawDataAsNumpy()
    if isinstance(raw, int):  # no raw_data (ORT writes every numeric tensor as raw bytes)
        raise OrtFormatError(f"{where}: initializer {_str(t.Name())!r} has no raw data")
    return np.frombuffer(raw.tobytes(), dtype=dtype).reshape(dims).copy()


def _attr(a, where: str) -> tuple[int, object]:
    kind = a.Type()
    if kind in _SCALAR_ATTR:
        return kind, getattr(a, _SCALAR_ATTR[kind])()
    if kind in _LIST_ATTR:
        get, length = _LIST_ATTR[kind]
        return kind, [getattr(a, get)(k) for k in range(getattr(a, length)())]
    raise OrtFormatError(f"{where}: attribute {_str(a.Name())!r} of type {kind} is not supported")


def read_ort_graph(path: str | Path) -> OrtGraph:
    """Parse the main graph of an ``.ort`` file (no subgraphs, numeric initializers)."""
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py import fbs

    where = str(path)
    buf = bytearray(Path(path).read_bytes())
    if not fbs.InferenceSession.InferenceSession.InferenceSessionBufferHasIdentifier(buf, 0):
        raise OrtFormatError(f"{where}: not an ONNX Runtime .ort file (no ORTM identifier)")
    model = fbs.InferenceSession.InferenceSession.GetRootAsInferenceSession(buf, 0).Model()
    g = model.Graph()
    opsets = [
        (_str(model.OpsetImport(i).Domain()), model.OpsetImport(i).Version())
        for i in range(model.OpsetImportLength())
    ]
    inits = {}
    for i in range(g.InitializersLength()):
        t = g.Initializers(i)
        inits[_str(t.Name())] = _tensor(t, where)
    nodes = []
    for i in range(g.NodesLength()):
        n = g.Nodes(i)
        attrs = {}
        for j in range(n.AttributesLength()):
            a = n.Attributes(j)
            attrs[_str(a.Name())] = _attr(a, where)
        nodes.append(
            OrtNode(
                _str(n.OpType()),
                _str(n.Domain()),
                [_str(n.Inputs(j)) for j in range(n.InputsLength())],
                [_str(n.Outputs(j)) for j in range(n.OutputsLength())],
                attrs,
            )
        )
    graph = OrtGraph(
        where,
        model.IrVersion(),
        opsets,
        [_str(g.Inputs(i)) for i in range(g.InputsLength())],
        [_str(g.Outputs(i)) for i in range(g.OutputsLength())],
        inits,
        nodes,
    )
    graph.producer = {o: n for n in nodes for o in n.outputs if o}
    return graph


# ---- a minimal protobuf writer for onnx.proto's ModelProto -------------------------------


def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1  # negative int64 -> two's complement, 10 bytes
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(num: int, wire: int) -> bytes:
    return _varint((num << 3) | wire)


def _int(num: int, v: int) -> bytes:
    return _key(num, 0) + _varint(int(v))


def _bytes(num: int, b: bytes) -> bytes:
    return _key(num, 2) + _varint(len(b)) + b


def _text(num: int, s: str) -> bytes:
    return _bytes(num, s.encode("utf-8"))


def _attribute_proto(name: str, kind: int, value) -> bytes:
    out = _text(1, name) + _int(20, kind)
    if kind == 1:
        out += _key(2, 5) + struct.pack("<f", value)
    elif kind == 2:
        out += _int(3, value)
    elif kind == 3:
        out += _bytes(4, bytes(value))
    elif kind == 6:
        out += b"".join(_key(7, 5) + struct.pack("<f", v) for v in value)
    elif kind == 7:
        out += b"".join(_int(8, v) for v in value)
    return out


def _tensor_proto(name: str, a: np.ndarray) -> bytes:
    code = next(k for k, v in _NP.items() if np.dtype(v) == a.dtype)
    dims = b"".join(_int(1, d) for d in a.shape)
    return dims + _int(2, code) + _text(8, name) + _bytes(9, np.ascontiguousarray(a).tobytes())


def _value_info(name: str, elem_type: int | None) -> bytes:
    if elem_type is None:
        return _text(1, name)
    return _text(1, name) + _bytes(2, _bytes(1, _int(1, elem_type)))  # type.tensor_type.elem


def to_onnx_bytes(
    g: OrtGraph, extra_outputs: list[str] = (), input_types: dict[str, int] | None = None
) -> bytes:
    """Serialize `g` as an ONNX ModelProto, adding `extra_outputs` (float32) as graph outputs.

    input_types: ONNX element type of each graph input (float32 when not given).
    """
    types = input_types or {}
    nodes = b""
    for k, n in enumerate(g.nodes):
        body = b"".join(_text(1, i) for i in n.inputs) + b"".join(_text(2, o) for o in n.outputs)
        body += _text(3, f"n{k}") + _text(4, n.op_type) + _text(7, n.domain)
        body += b"".join(_bytes(5, _attribute_proto(a, *v)) for a, v in n.attrs.items())
        nodes += _bytes(1, body)
    graph = nodes + _text(2, "main")
    graph += b"".join(_bytes(5, _tensor_proto(k, v)) for k, v in g.initializers.items())
    graph += b"".join(_bytes(11, _value_info(i, types.get(i, 1))) for i in g.inputs)
    for o in list(g.outputs) + [o for o in extra_outputs if o not in g.outputs]:
        if o not in g.producer:
            raise OrtFormatError(f"{g.path}: no node computes {o!r}; cannot output it")
        graph += _bytes(12, _value_info(o, 1))
    opsets = b"".join(_bytes(8, _text(1, d) + _int(2, v)) for d, v in g.opsets)
    return _int(1, g.ir_version) + _text(2, "sfm-pipeline") + opsets + _bytes(7, graph)
