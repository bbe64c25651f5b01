"""The C2C fuser: maps a sharer's KV-cache into a receiver's KV-cache, one receiver layer at a time.

Read top to bottom, this file is the method of the paper (docs/method.md §2.2), with the published parameter
names so that a released `projector_{i}.pt` loads into `C2CFuser` with strict key checks:

    for K (and, with its own weights, V), per token:
        z = mlp1(in([sharer heads flattened ; receiver heads flattened]))     # feature fusion
        P = proj_out(proj_mlp2(z))                                            # projected K, (Ht, Dt)
        w = sigmoid(scalar_head(scalar_mlp2(z)))                              # one weight per receiver KV head
        g = gate(gate_logit)                                                  # Gumbel-sigmoid (train) / hard (eval)
        K_fused = K_receiver + g * w * P                                      # residual add

`FuserStack` holds one fuser per mapped receiver layer and fuses all layers in one `forward`, which
is what DDP needs (a wrapped module must be called through its own forward). At inference (eval mode,
no grad) it runs every open K and V path of the step together: `StackedPaths` stacks the paths'
weights along a leading dimension, so each of the network's matmuls is one batched `bmm` over all
layers and both paths instead of 2 x layers small ones (docs/perf.md). Paths whose hard eval gate is
closed add exactly nothing and are skipped.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Collection
from typing import get_args

import torch
import torch.nn.functional as F
from torch import nn

from .config import AnnealSchedule

KINDS = ("key", "value")
ACTIVATION_BYTES = 1 << 20
"""On a CPU, `StackedPaths` runs as many paths per batched matmul as keep one (paths, tokens, h)
activation near this size (1 MiB), so the elementwise work between the matmuls runs in the cache:
all 56 paths of a 28-layer receiver at once ran 1.2-2.9x slower than one fuser after another (docs/perf.md)."""


class FFNBlock(nn.Module):
    """Pre-norm residual FFN block: `y = x + Dropout(W2 · GELU(W1 · RMSNorm(x)))`, bias-free, exact GELU.

    Args:
        hidden_dim: Width of the residual stream h.
        intermediate_dim: Width of the inner layer i.
        dropout: Dropout probability on the block output.
    """

    def __init__(self, hidden_dim: int, intermediate_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(hidden_dim, eps=1e-6)
        self.w1 = nn.Linear(hidden_dim, intermediate_dim, bias=False)
        self.w2 = nn.Linear(intermediate_dim, hidden_dim, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x`: (..., h) -> (..., h).

        Under autocast `x` arrives in the autocast dtype while the norm's weight stays float32; the
        weight is cast to `x`'s dtype so torch runs its fused RMSNorm instead of warning and falling back.
        """
        norm = self.norm
        weight = None if norm.weight is None else norm.weight.to(x.dtype)
        normed = F.rms_norm(x, norm.normalized_shape, weight, norm.eps)
        return x + self.dropout(self.w2(F.gelu(self.w1(normed))))


class FFNStack(nn.Module):
    """`num_blocks` FFN blocks in sequence (zero blocks is the identity). Keys: `blocks.{j}.*`."""

    def __init__(self, hidden_dim: int, intermediate_dim: int, num_blocks: int, dropout: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(FFNBlock(hidden_dim, intermediate_dim, dropout) for _ in range(num_blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x`: (..., h) -> (..., h)."""
        for block in self.blocks:
            x = block(x)
        return x


class C2CFuser(nn.Module):
    """The published C2C fuser for one receiver layer (docs/method.md §2.2), with separate K and V paths.

    Args:
        source_dim: Sharer head_dim Ds.
        target_dim: Receiver head_dim Dt.
        source_num_heads: Sharer KV heads Hs.
        target_num_heads: Receiver KV heads Ht.
        hidden_dim: Width h of the fusion network (published: 1024).
        intermediate_dim: Inner width i of the FFN blocks (published: 1024).
        num_layers: Depth L >= 3: one fusion block, then L-2 projection blocks.
        dropout: Dropout inside the FFN blocks.
        initial_temperature: Gate temperature at step 0.
        final_temperature: Gate temperature once annealed.
        anneal_steps: Steps over which the temperature anneals.
        zero_init: Zero `proj_out`, so an untrained fuser adds nothing (fusion starts as the identity).
        gate_init: Initial K and V gate logits. The published value is 0.0, which is a *closed* gate
            at eval time; small-scale runs open it (e.g. +3) so fusion is not randomly dropped while the
            gate logit is still near 0 (see docs/method.md).
        anneal_schedule: `"geometric"` (published code) or `"linear"` (the paper's wording).

    State-dict keys equal the published `projector_{i}.pt`: `key_in.*`, `key_mlp1.blocks.0.*`,
    `key_proj_mlp2.blocks.*`, `key_proj_out.*`, `key_scalar_mlp2.blocks.0.*`, `key_scalar_head.*`,
    the same with `value_`, plus `key_gate_logit`, `value_gate_logit` and the `gate_temperature` buffer.
    """

    # The attributes other modules read (the K and V modules are set by name in __init__).
    key_in: nn.Linear
    value_in: nn.Linear
    key_gate_logit: nn.Parameter
    value_gate_logit: nn.Parameter
    gate_temperature: torch.Tensor

    def __init__(
        self,
        source_dim: int,
        target_dim: int,
        source_num_heads: int,
        target_num_heads: int,
        hidden_dim: int = 1024,
        intermediate_dim: int = 1024,
        num_layers: int = 3,
        dropout: float = 0.1,
        initial_temperature: float = 1.0,
        final_temperature: float = 0.001,
        anneal_steps: int = 1929,
        zero_init: bool = False,
        gate_init: float = 0.0,
        anneal_schedule: AnnealSchedule = "geometric",
    ) -> None:
        super().__init__()
        if num_layers < 3:
            raise ValueError(
                f"C2CFuser needs num_layers >= 3 (one fusion block, L-2 projection blocks), got {num_layers}"
            )
        if anneal_schedule not in get_args(AnnealSchedule):
            raise ValueError(
                f"anneal_schedule must be one of {', '.join(get_args(AnnealSchedule))}, got {anneal_schedule!r}"
            )
        self.source_num_heads, self.source_dim = source_num_heads, source_dim
        self.target_num_heads, self.target_dim = target_num_heads, target_dim
        self.initial_temperature, self.final_temperature = initial_temperature, final_temperature
        self.anneal_steps, self.anneal_schedule = anneal_steps, anneal_schedule
        in_features = source_num_heads * source_dim + target_num_heads * target_dim
        out_features = target_num_heads * target_dim
        h, i = hidden_dim, intermediate_dim
        for kind in ("key", "value"):
            setattr(self, f"{kind}_in", nn.Linear(in_features, h))
            setattr(self, f"{kind}_mlp1", FFNStack(h, i, 1, dropout))
            setattr(self, f"{kind}_proj_mlp2", FFNStack(h, i, num_layers - 2, dropout))
            setattr(self, f"{kind}_proj_out", nn.Linear(h, out_features))
            setattr(self, f"{kind}_scalar_mlp2", FFNStack(h, h, 1, dropout))
            setattr(self, f"{kind}_scalar_head", nn.Linear(h, target_num_heads))
            setattr(self, f"{kind}_gate_logit", nn.Parameter(torch.tensor(float(gate_init))))
            if zero_init:
                proj_out: nn.Linear = getattr(self, f"{kind}_proj_out")
                nn.init.zeros_(proj_out.weight)
                nn.init.zeros_(proj_out.bias)
        self.register_buffer("gate_temperature", torch.tensor(float(initial_temperature)))

    def update_temperature(self, step: int) -> None:
        """Anneal the gate temperature to its value at optimizer step `step` (clamped at `anneal_steps`)."""
        progress = min(step / max(self.anneal_steps, 1), 1.0)
        t0, tf = self.initial_temperature, self.final_temperature
        if self.anneal_schedule == "geometric":
            value = t0 * (tf / t0) ** progress
        else:
            value = t0 + (tf - t0) * progress
        self.gate_temperature.fill_(value)

    def _gate(self, logit: torch.Tensor, shape: tuple[int, int, int, int]) -> torch.Tensor:
        """Gate of shape broadcastable to `shape` = (B, Ht, N, 1).

        Training: Gumbel-sigmoid with noise drawn per (batch, head, token). Eval: hard `logit > 0`, in
        the logit's dtype (the reference upcasts to float32 here, which changes the output dtype).
        """
        if self.training:
            u = torch.rand(shape, device=logit.device, dtype=torch.float32)
            gumbel = -torch.log(-torch.log(u + 1e-20) + 1e-20)
            return torch.sigmoid((logit + gumbel.to(logit.dtype)) / self.gate_temperature.to(logit.dtype))
        return (logit > 0).to(logit.dtype).reshape(1, 1, 1, 1)

    def _fuse_one(self, kind: str, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Fuse the K (`kind="key"`) or V (`kind="value"`) path.

        Args:
            source: Sharer cache tensor, (B, Hs, N, Ds).
            target: Receiver cache tensor, (B, Ht, N, Dt).

        Returns:
            Fused receiver tensor, (B, Ht, N, Dt), in the receiver's dtype.
        """
        b, ht, n, dt = target.shape
        dtype = getattr(self, f"{kind}_in").weight.dtype
        if torch.is_autocast_enabled(target.device.type):
            dtype = torch.get_autocast_dtype(target.device.type)
        xs = source.transpose(1, 2).reshape(b, n, -1)  # (B, N, Hs*Ds)
        xt = target.transpose(1, 2).reshape(b, n, -1)  # (B, N, Ht*Dt)
        z = getattr(self, f"{kind}_mlp1")(getattr(self, f"{kind}_in")(torch.cat([xs, xt], dim=-1).to(dtype)))
        projected = getattr(self, f"{kind}_proj_out")(getattr(self, f"{kind}_proj_mlp2")(z))
        projected = projected.reshape(b, n, ht, dt).transpose(1, 2)  # (B, Ht, N, Dt)
        weight = torch.sigmoid(getattr(self, f"{kind}_scalar_head")(getattr(self, f"{kind}_scalar_mlp2")(z)))
        weight = weight.permute(0, 2, 1).unsqueeze(-1)  # (B, Ht, N, 1)
        gate = self._gate(getattr(self, f"{kind}_gate_logit"), (b, ht, n, 1))
        return (target + (gate * weight * projected).to(target.dtype)).to(target.dtype)

    def forward(
        self, source_kv: tuple[torch.Tensor, torch.Tensor], target_kv: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fuse one layer.

        Args:
            source_kv: Sharer `(K, V)`, each (B, Hs, N, Ds), post-RoPE keys as stored in a HF cache.
            target_kv: Receiver `(K, V)`, each (B, Ht, N, Dt).

        Returns:
            Fused receiver `(K, V)`, each (B, Ht, N, Dt).
        """
        (ks, vs), (kt, vt) = source_kv, target_kv
        if ks.shape[-2] != kt.shape[-2]:
            raise ValueError(
                f"sharer and receiver caches must cover the same tokens, got {ks.shape[-2]} and {kt.shape[-2]}"
            )
        return self._fuse_one("key", ks, kt), self._fuse_one("value", vs, vt)


class StackedPaths:
    """The weights of G fuser paths (the K or V path of one layer each) stacked along a leading dim G.

    Computes, for every path g at once, what `C2CFuser._fuse_one` computes before the residual add:
    `P_g = proj_out(proj_mlp2(z))` and `w_g = sigmoid(scalar_head(scalar_mlp2(z)))`, with
    `z = mlp1(in(x_g))`. The weights are copies (transposed for `bmm`), in `dtype`, rearranged so that
    the elementwise passes (memory-bound on a CPU) are few; the function is the same:

    - each block's RMSNorm weight is folded into its `w1` (`(r * n) @ W1 = r @ (diag(n) W1)`), and the
      per-row normalisation is one float32 reduction (`vector_norm`) and one scale;
    - the first blocks of `proj_mlp2` and `scalar_mlp2` both normalise `z`, so their `w1` are one
      matrix (h, i + h) and one `bmm`.

    Args:
        paths: (fuser, "key" | "value") per path; all fusers of the same sizes.
        dtype: The dtype to compute in.
    """

    def __init__(self, paths: list[tuple[C2CFuser, str]], dtype: torch.dtype) -> None:
        def linear(name: str) -> tuple[torch.Tensor, torch.Tensor]:
            layers = [getattr(f, f"{k}_{name}") for f, k in paths]
            weight = torch.stack([m.weight.detach().t() for m in layers]).to(dtype)  # (G, in, out)
            bias = torch.stack([m.bias.detach() for m in layers]).to(dtype).unsqueeze(1)  # (G, 1, out)
            return weight, bias

        def blocks(name: str) -> list[tuple[float, torch.Tensor, torch.Tensor]]:
            stacks = [getattr(f, f"{k}_{name}").blocks for f, k in paths]
            out = []
            for j in range(len(stacks[0])):
                block = [s[j] for s in stacks]
                norm = torch.stack([b.norm.weight.detach().float() for b in block]).unsqueeze(-1)  # (G, h, 1)
                w1 = torch.stack([b.w1.weight.detach().float().t() for b in block])  # (G, h, i)
                w2 = torch.stack([b.w2.weight.detach().t() for b in block]).to(dtype)  # (G, i, h)
                out.append((float(block[0].norm.eps), (norm * w1).to(dtype), w2))
            return out

        self.dtype = dtype
        self.linear_in, self.proj_out, self.scalar_head = linear("in"), linear("proj_out"), linear("scalar_head")
        self.mlp1 = blocks("mlp1")
        (self.eps, proj_w1, self.proj_w2), *self.proj_rest = blocks("proj_mlp2")
        ((_, scalar_w1, self.scalar_w2),) = blocks("scalar_mlp2")
        self.branch_w1 = torch.cat([proj_w1, scalar_w1], dim=-1)  # (G, h, i + h)
        self.proj_width = proj_w1.shape[-1]

    @staticmethod
    def _normalised(x: torch.Tensor, eps: float) -> torch.Tensor:
        """RMSNorm without a weight (folded into the next matmul): (G, M, h) -> (G, M, h), in `x`'s dtype."""
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=torch.float32)  # (G, M, 1)
        return x * torch.rsqrt(norm.square_().div_(x.shape[-1]).add_(eps)).to(x.dtype)

    @classmethod
    def _ffn(cls, x: torch.Tensor, stack: list[tuple[float, torch.Tensor, torch.Tensor]], g: slice) -> torch.Tensor:
        """`FFNStack` in eval mode on paths `g`: (G', M, h) -> (G', M, h)."""
        for eps, w1, w2 in stack:
            x = torch.baddbmm(x, F.gelu(torch.bmm(cls._normalised(x, eps), w1[g])), w2[g])
        return x

    def group_size(self, rows: int, device: torch.device) -> int:
        """Paths to run per batched matmul for `rows` rows: on a CPU as many as keep one (paths, rows, h)
        activation near `ACTIVATION_BYTES`, so the elementwise passes between the matmuls stay in the
        cache; elsewhere all of them."""
        paths, hidden_dim = self.branch_w1.shape[:2]
        if device.type != "cpu":
            return paths
        return max(1, ACTIVATION_BYTES // (rows * hidden_dim * self.branch_w1.element_size()))

    def __call__(self, x: torch.Tensor, g: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """Paths `g` of the stack: `x` (G', M, Hs*Ds + Ht*Dt) fuser inputs -> projected (G', M, Ht*Dt)
        and weights (G', M, Ht)."""
        weight, bias = self.linear_in
        z = self._ffn(torch.baddbmm(bias[g], x.to(self.dtype), weight[g]), self.mlp1, g)  # (G', M, h)
        hidden = F.gelu(torch.bmm(self._normalised(z, self.eps), self.branch_w1[g]))  # (G', M, i + h)
        proj_hidden, scalar_hidden = hidden.split([self.proj_width, hidden.shape[-1] - self.proj_width], dim=-1)
        weight, bias = self.proj_out
        projected = torch.baddbmm(
            bias[g], self._ffn(torch.baddbmm(z, proj_hidden, self.proj_w2[g]), self.proj_rest, g), weight[g]
        )
        weight, bias = self.scalar_head
        scalar = torch.baddbmm(z, scalar_hidden, self.scalar_w2[g])
        return projected, torch.sigmoid(torch.baddbmm(bias[g], scalar, weight[g]))


class FuserStack(nn.Module):
    """One `C2CFuser` per mapped receiver layer; `fusers[str(receiver_layer)]`.

    Args:
        layer_map: Receiver layer -> sharer layer, for every receiver layer that gets a fuser.
        fusers: Receiver layer -> its fuser; same keys as `layer_map`.
    """

    def __init__(self, layer_map: dict[int, int], fusers: dict[int, C2CFuser]) -> None:
        super().__init__()
        if set(layer_map) != set(fusers):
            raise ValueError(
                f"layer map covers receiver layers {sorted(layer_map)} but fusers exist for {sorted(fusers)}"
            )
        self.layer_map = dict(sorted(layer_map.items()))
        self.fusers = nn.ModuleDict({str(t): fusers[t] for t in self.layer_map})
        self._stack_cache: tuple[tuple, StackedPaths] | None = None
        self._same_sizes = len({tuple(p.shape for p in f.parameters()) for f in self.fusers.values()}) <= 1

    def fuser(self, layer: int) -> C2CFuser:
        """The fuser of receiver layer `layer`."""
        return typing.cast(C2CFuser, self.fusers[str(layer)])

    def update_temperature(self, step: int) -> None:
        """Anneal every fuser's gate temperature to optimizer step `step`."""
        for layer in self.layer_map:
            self.fuser(layer).update_temperature(step)

    def forward(
        self,
        sharer_kv: list[tuple[torch.Tensor, torch.Tensor]],
        receiver_kv: list[tuple[torch.Tensor, torch.Tensor]],
        fusion_mask: torch.Tensor,
        *,
        layers: Collection[int] | None = None,
        strength: float = 1.0,
        batched: bool = True,
    ) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Fuse every mapped receiver layer (or the mapped ones among `layers`).

        Receiver layers may hold fewer tokens than the sharer (a sliding-window layer keeps only the
        last W tokens); fusion then pairs the trailing tokens, which are the same positions.

        Args:
            sharer_kv: Per sharer layer `(K, V)`, each (B, Hs, N, Ds).
            receiver_kv: Per receiver layer `(K, V)`, each (B, Ht, N_l, Dt) with N_l <= N.
            fusion_mask: (B, N) bool, True where a token is fused.
            layers: Receiver layers to fuse; None fuses every mapped layer (see `control.py`).
            strength: alpha, the scale of each fused delta: `K_r + alpha * (K_fused - K_r)`.
            batched: In eval mode without grad, run all paths as batched matmuls over stacked weights
                (`StackedPaths`, cached until a parameter changes); False runs each fuser in turn. Both
                compute the same function (tests/test_fuser.py); training always runs each fuser.

        Returns:
            Receiver layer -> fused `(K, V)`, each (B, Ht, N_l, Dt); unfused tokens keep receiver values.
        """
        selected = [t for t in self.layer_map if layers is None or t in layers]
        batched = batched and self._same_sizes and not self.training and not torch.is_grad_enabled()
        fused: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        by_length: dict[int, list[int]] = {}
        for t in selected:
            by_length.setdefault(receiver_kv[t][0].shape[-2], []).append(t)
        for n, group in by_length.items():
            kt0 = receiver_kv[group[0]][0]
            mask = fusion_mask[:, fusion_mask.shape[1] - n :].to(kt0.device)  # (B, N_l)
            # The fuser treats tokens independently, so it only runs on columns some row fuses
            # (template tokens and left padding are skipped).
            cols = None if bool(mask.all()) else mask.any(0).nonzero().squeeze(1)
            if cols is not None and cols.numel() == 0:
                fused.update({t: receiver_kv[t] for t in group})
                continue
            keep = None if cols is None else ~mask.index_select(1, cols)[:, None, :, None]  # (B, 1, C, 1)
            pairs = {
                t: (
                    [_columns(x, n, cols) for x in sharer_kv[self.layer_map[t]]],
                    [_columns(x, n, cols) for x in receiver_kv[t]],
                )
                for t in group
            }
            if batched:
                outputs = self._fuse_batched(pairs)
            else:
                outputs = {t: self.fuser(t)((ks, vs), (kt, vt)) for t, ((ks, vs), (kt, vt)) in pairs.items()}
            for t, (k_new, v_new) in outputs.items():
                k_old, v_old = pairs[t][1]
                if strength != 1:
                    k_new, v_new = k_old + strength * (k_new - k_old), v_old + strength * (v_new - v_old)
                if cols is None or keep is None:
                    fused[t] = (k_new, v_new)
                else:
                    k_full, v_full = receiver_kv[t]
                    fused[t] = (
                        k_full.index_copy(2, cols, torch.where(keep, k_old, k_new)),
                        v_full.index_copy(2, cols, torch.where(keep, v_old, v_new)),
                    )
        return fused

    def _fuse_batched(
        self, pairs: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]]
    ) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Every open K and V path of `pairs` through one `StackedPaths`, in eval mode.

        Args:
            pairs: Receiver layer -> (sharer `[K, V]`, each (B, Hs, C, Ds); receiver `[K, V]`, each (B, Ht, C, Dt)).

        Returns:
            Receiver layer -> fused `(K, V)`, each (B, Ht, C, Dt): `K_r + w * P` on open paths, `K_r` on closed ones.
        """
        gates = {t: torch.stack([self.fuser(t).key_gate_logit, self.fuser(t).value_gate_logit]) for t in pairs}
        open_gates = (torch.stack(list(gates.values())) > 0).tolist()  # one sync for every gate of the step
        paths = [(t, kind) for t, is_open in zip(gates, open_gates, strict=True) for kind in (0, 1) if is_open[kind]]
        result = {t: list(receiver) for t, (_, receiver) in pairs.items()}
        if paths:
            kt = next(iter(pairs.values()))[1][0]
            dtype = self.fuser(paths[0][0]).key_in.weight.dtype
            if torch.is_autocast_enabled(kt.device.type):
                dtype = torch.get_autocast_dtype(kt.device.type)
            b, ht, c, dt = kt.shape
            stacked = self._stacked(paths, dtype)
            step = stacked.group_size(b * c, kt.device)
            for start in range(0, len(paths), step):
                group = paths[start : start + step]
                x = torch.cat(
                    [torch.cat([pairs[t][side][kind].transpose(1, 2).reshape(b, c, -1) for side in (0, 1)], dim=-1)
                     .to(dtype).reshape(1, b * c, -1) for t, kind in group], dim=0)  # (G', B*C, Hs*Ds + Ht*Dt)  # fmt: skip
                projected, weight = stacked(x, slice(start, start + step))
                delta = (weight.unsqueeze(-1) * projected.reshape(len(group), b * c, ht, dt)).reshape(
                    len(group), b, c, ht, dt
                )
                for g, (t, kind) in enumerate(group):
                    target = result[t][kind]
                    result[t][kind] = target + delta[g].transpose(1, 2).to(target.dtype)
        return {t: (k, v) for t, (k, v) in result.items()}

    def _stacked(self, paths: list[tuple[int, int]], dtype: torch.dtype) -> StackedPaths:
        """The stacked weights of `paths`, rebuilt only when a parameter changed (in value, place or dtype)."""
        params = [p for t, _ in paths for p in self.fuser(t).parameters()]
        key = (tuple(paths), dtype, tuple((p.data_ptr(), p._version, p.dtype) for p in params))
        if self._stack_cache is None or self._stack_cache[0] != key:
            self._stack_cache = None  # free the old copy before building the new one
            self._stack_cache = (key, StackedPaths([(self.fuser(t), KINDS[k]) for t, k in paths], dtype))
        return self._stack_cache[1]


def _columns(x: torch.Tensor, n: int, cols: torch.Tensor | None) -> torch.Tensor:
    """The last `n` tokens of a cache tensor, at columns `cols` of those (all when None): (B, H, N', D) -> (B, H, C, D)."""
    x = x[..., x.shape[-2] - n :, :]
    return x if cols is None else x.index_select(2, cols)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (buffers excluded)."""
    return sum(math.prod(p.shape) for p in module.parameters())


def load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """`load_state_dict(strict=True)` with one error listing every missing, unexpected or mis-shaped key."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k}: file {tuple(state[k].shape)} != model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
        if unexpected:
            parts.append(
                f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:8])}{' ...' if len(unexpected) > 8 else ''}"
            )
        if wrong:
            parts.append(f"wrong shapes ({len(wrong)}): {', '.join(wrong[:8])}")
        raise ValueError(
            f"{source} does not match the fuser architecture: {'; '.join(parts)}. "
            "Fix: load it for the pair and fuser sizes it was trained with (see its config)."
        )
    module.load_state_dict(state, strict=True)
