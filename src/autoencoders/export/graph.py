"""A converted ONNX graph in a canonical form: the same computation always gives the same bytes.

tf2onnx's output is not reproducible: it merges equal nodes and constants and orders independent
nodes in a way that changes from one conversion to the next (one run keeps ``lstm/zeros``, the
next ``lstm/zeros_1``; ``const_starts__2`` or ``const_axes__4``; two independent ``Slice`` nodes
swap), and names what it adds from a process-wide counter. The same model exported twice then
gave other bytes, and DVC saw a changed export on every machine. ``canonical_names`` rewrites a
graph so that its bytes depend on what it computes only; ``autoencoders.export`` applies it to
every conversion, before the parity gate checks the result against Keras.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Mapping
from typing import Any


def canonical_names(graph: Any) -> None:
    """Give ``graph`` (an ``onnx.GraphProto``) an order and names that depend on its computation
    only, in place.

    Equal initializers become one, nodes are sorted topologically with ties broken by what
    they compute (a hash of the op, its attributes and, recursively, its inputs), then named
    by position: nodes ``<op>_<index>`` with outputs ``<node>:<k>``, initializers
    ``initializer_<k>`` in order of first use. The graph's inputs and outputs keep their names.
    (Loop/Scan/If bodies, which these models do not have, keep their inner names.) A graph
    with a cycle raises ValueError.
    """
    constants = {}  # name -> (the tensor without its name, a digest of its content)
    for tensor in graph.initializer:
        content = type(tensor)()
        content.CopyFrom(tensor)
        content.name = ""
        constants[tensor.name] = (content, hashlib.sha256(content.SerializeToString()).hexdigest())
    nodes = _sorted_by_computation(graph, {name: key for name, (_, key) in constants.items()})
    interface = {value.name for value in (*graph.input, *graph.output)}
    names: dict[str, str] = {}
    unique: dict[str, Any] = {}  # equal constants become one, whichever of them tf2onnx merged
    for name in (name for node in nodes for name in node.input):
        if name in constants and name not in names:
            content, key = constants[name]
            if key not in unique:
                content.name = f"initializer_{len(unique)}"
                unique[key] = content
            names[name] = unique[key].name
    for index, node in enumerate(nodes):
        node.name = f"{node.op_type}_{index}"
        for k, output in enumerate(node.output):
            if output and output not in interface:
                names[output] = f"{node.name}:{k}"
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(unique.values())
    _rename_tensors(graph, lambda name: names.get(name, name))


def _sorted_by_computation(graph: Any, constant_keys: Mapping[str, str]) -> list[Any]:
    # Kahn's algorithm over the nodes; among the nodes ready at once, the smallest hash first.
    # constant_keys: each initializer's content digest.
    keys: dict[str, str] = {value.name: "input:" + value.name for value in graph.input}
    keys.update(constant_keys)
    node_keys = []
    for node in graph.node:  # tf2onnx's order is topological: inputs come first
        attributes = sorted(a.SerializeToString() for a in node.attribute)
        signature = [node.op_type, node.domain, *map(bytes.hex, attributes)]
        signature += [keys.get(name, "outer:" + name) for name in node.input]
        key = hashlib.sha256("|".join(signature).encode()).hexdigest()
        node_keys.append(key)
        keys.update({output: f"{key}:{k}" for k, output in enumerate(node.output)})
    producer = {output: i for i, node in enumerate(graph.node) for output in node.output if output}
    waiting = [{producer[name] for name in node.input if name in producer} for node in graph.node]
    consumers: dict[int, list[int]] = {}
    for i, needs in enumerate(waiting):
        for j in needs:
            consumers.setdefault(j, []).append(i)
    ready = [(node_keys[i], i) for i, needs in enumerate(waiting) if not needs]
    heapq.heapify(ready)
    order = []
    while ready:
        _, i = heapq.heappop(ready)
        order.append(graph.node[i])
        for j in consumers.get(i, []):
            waiting[j].discard(i)
            if not waiting[j]:
                heapq.heappush(ready, (node_keys[j], j))
    if len(order) != len(graph.node):
        raise ValueError(f"the converted graph {graph.name!r} has a cycle; cannot order it")
    copies = []
    for node in order:
        copies.append(type(node)())
        copies[-1].CopyFrom(node)
    return copies


def _rename_tensors(graph: Any, rename: Callable[[str], str]) -> None:
    for value in (*graph.input, *graph.output, *graph.value_info):
        value.name = rename(value.name)
    for node in graph.node:
        node.input[:] = [rename(name) for name in node.input]
        node.output[:] = [rename(name) for name in node.output]
        for attribute in node.attribute:
            for subgraph in ([attribute.g] if attribute.HasField("g") else []) + list(
                attribute.graphs
            ):
                _rename_tensors(subgraph, rename)


__all__ = ["canonical_names"]
