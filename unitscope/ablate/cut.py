"""Cut a network at a layer: run the layers before it once, then only the rest, many edits a batch.

    cut = cut_model(model, "layer3.1.relu")        # torch.fx; a hook-based fallback otherwise
    cache = cut.head(x)                             # CutCache: the layer's output [N, C, H, W] plus
                                                    # every other tensor that skips over the cut
    logits = cut.tail(cache)                        # == model(x)
    logits = cut.tail(cache, edit=lambda z: z * 0)  # the rest of the network on an edited layer

The model is traced with :mod:`torch.fx`, the layer kept as one leaf node. Nodes that depend on
the layer's output form the *tail*; everything else the *head*. The values flowing from head to
tail are cached (the layer's output and, say, a residual input that jumps over it), so the tail
GraphModule needs nothing else. ``cache.repeat(k)`` tiles every cached tensor ``k`` times along
the batch, so ``k`` different edits of one batch run as one tail pass.

When fx cannot trace the model, :class:`HookCut` does the same job with a full forward pass and
an ``edit_output`` hook (``cut.exact_tail`` is False and ``cut.reason`` says why).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from unitscope.hooks import Trace
from unitscope.layers import resolve_layer

Edit = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class CutCache:
    """What crosses the cut for one batch: ``layer`` ``[N, C, ...]`` and the other values."""

    layer: torch.Tensor
    others: tuple[Any, ...] = ()
    inputs: torch.Tensor | None = None  # kept only by the hook fallback (it reruns the model)

    def repeat(self, k: int, layer: bool = True) -> CutCache:
        """Every batch-sized tensor tiled ``k`` times: ``[N, ...]`` -> ``[k * N, ...]`` (``layer=False``:
        all but the layer's output, which an edit tiles itself)."""
        n = self.layer.shape[0]

        def tile(v: Any) -> Any:
            if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == n:
                return v.repeat(k, *([1] * (v.dim() - 1)))
            return v

        return CutCache(
            tile(self.layer) if layer else self.layer, tuple(tile(v) for v in self.others), tile(self.inputs)
        )

    def to(self, device: torch.device | str) -> CutCache:
        move = lambda v: v.to(device) if isinstance(v, torch.Tensor) else v
        return CutCache(move(self.layer), tuple(move(v) for v in self.others), move(self.inputs))


class _LeafTracer(fx.Tracer):
    """The default tracer, with the cut layer kept whole as one ``call_module`` node."""

    def __init__(self, leaf: nn.Module):
        super().__init__()
        self._leaf = leaf

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return m is self._leaf or super().is_leaf_module(m, qualname)


class FxCut(nn.Module):
    """The model split at ``layer`` into a head and a tail GraphModule (see the module docstring)."""

    exact_tail = True
    reason = "torch.fx"

    def __init__(self, model: nn.Module, layer: str):
        super().__init__()
        self.layer, module = resolve_layer(model, layer)
        graph = _LeafTracer(module).trace(model)
        nodes = [n for n in graph.nodes if n.op == "call_module" and n.target == self.layer]
        if len(nodes) != 1:
            raise RuntimeError(f"layer {self.layer!r} is called {len(nodes)} times in the traced graph")
        cut = nodes[0]
        tail = _descendants(cut)
        crossing = [cut] + [
            n
            for n in graph.nodes
            if n not in tail and n is not cut and n.op != "get_attr" and any(u in tail for u in n.users)
        ]
        self.head_module = _subgraph(model, graph, [n for n in graph.nodes if n not in tail], [], crossing)
        self.tail_module = _subgraph(
            model, graph, [n for n in graph.nodes if n in tail or n.op == "get_attr"], crossing, None
        )
        self.crossing = [n.name for n in crossing]

    def head(self, x: torch.Tensor) -> CutCache:
        """Run the layers up to the cut on ``x`` ``[N, 3, H, W]``; what the tail needs."""
        values = self.head_module(x)
        return CutCache(values[0], tuple(values[1:]))

    def tail(self, cache: CutCache, edit: Edit | None = None) -> Any:
        z = cache.layer if edit is None else edit(cache.layer)
        return self.tail_module(z, *cache.others)


def _descendants(node: fx.Node) -> set[fx.Node]:
    seen: set[fx.Node] = set()
    stack = list(node.users)
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(n.users)
    return seen


def _subgraph(
    root: nn.Module, graph: fx.Graph, keep: list[fx.Node], inputs: list[fx.Node], outputs: list[fx.Node] | None
) -> fx.GraphModule:
    """A GraphModule of the nodes ``keep`` (graph order), fed by ``inputs`` as placeholders; it returns
    ``outputs`` as a tuple, or the original output when ``outputs`` is None."""
    new = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for n in inputs:
        env[n] = new.placeholder(n.name)
    for n in keep:
        if n in env:
            continue
        if n.op == "output":
            if outputs is None:
                new.output(fx.map_arg(n.args[0], lambda a: env[a]))
            continue
        env[n] = new.node_copy(n, lambda a: env[a])
    if outputs is not None:
        new.output(tuple(env[n] for n in outputs))
    gm = fx.GraphModule(root, new)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm


class HookCut:
    """Fallback when fx fails: ``head`` keeps the layer's output and the inputs; ``tail`` reruns the
    whole model with the layer's output replaced (so it costs a full forward pass)."""

    exact_tail = False

    def __init__(self, model: nn.Module, layer: str, reason: str = ""):
        self.model = model
        self.layer, _ = resolve_layer(model, layer)
        self.reason = reason or "hook fallback"

    def head(self, x: torch.Tensor) -> CutCache:
        with Trace(self.model, self.layer, stop=True) as t:
            self.model(x)
        return CutCache(t.output, (), x)

    def tail(self, cache: CutCache, edit: Edit | None = None) -> Any:
        z = cache.layer if edit is None else edit(cache.layer)
        with Trace(self.model, self.layer, retain_output=False, edit_output=lambda out, name: z):
            return self.model(cache.inputs)


def cut_model(model: nn.Module, layer: str, *, allow_fallback: bool = True) -> FxCut | HookCut:
    """Split ``model`` at ``layer`` with fx; on failure the hook fallback (it says why in ``.reason``)."""
    name, _ = resolve_layer(model, layer)
    try:
        cut = FxCut(model, name)
    except Exception as exc:  # fx raises many kinds of errors on untraceable code
        if not allow_fallback:
            raise
        return HookCut(
            model,
            name,
            reason=f"torch.fx could not cut the model ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); each "
            "ablation runs the full model with a hook",
        )
    return cut
