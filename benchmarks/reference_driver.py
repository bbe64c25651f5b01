"""The reference side of benchmarks/reference_compare.py: times the reference implementation
(thu-nics/C2C, `rosetta.model.wrapper.RosettaModel`) in its own virtual environment.

It is started by reference_compare.py with the reference venv's Python, never by hand, and imports
nothing from cache2cache (that venv has transformers 4.52.4, which cache2cache does not support).
It builds random-weight models from the shapes it is given (JSON on the command line), one
`C2CProjector` per receiver layer with the layer map it is given, gates open, then answers one
request per stdin line (JSON `{"mode": "receiver" | "c2c", "batch": B, "new_tokens": T}`) with one
JSON line on stdout: `{"seconds": ..., "fuse_seconds": ..., "generated": ...}` or `{"error": "..."}`.
The first line it writes is `{"ready": true, "transformers": "<version>"}` (or an error).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from typing import Any

import torch


def reply(message: dict[str, Any]) -> None:
    """One JSON line to the parent."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def build(spec: dict[str, Any], dtype: torch.dtype, device: torch.device) -> tuple[Any, list[Any]]:
    """The reference's RosettaModel over random-weight receiver and sharer, and its projectors."""
    import transformers
    from rosetta.model.projector import C2CProjector
    from rosetta.model.wrapper import RosettaModel

    models = []
    for side in ("receiver", "sharer"):
        shape = dict(spec[side])
        config_class = getattr(transformers, shape.pop("config_class"))
        torch.manual_seed(0 if side == "receiver" else 1)
        model = transformers.AutoModelForCausalLM.from_config(config_class(**shape), torch_dtype=dtype)
        models.append(model.to(device).eval())
    receiver, sharer = models
    r_cfg, s_cfg = receiver.config, sharer.config
    fuser = spec["fuser"]
    projectors = []
    layer_map = {int(t): int(s) for t, s in spec["layer_map"].items()}
    for _ in layer_map:
        projector = C2CProjector(
            source_dim=getattr(s_cfg, "head_dim", None) or s_cfg.hidden_size // s_cfg.num_attention_heads,
            target_dim=getattr(r_cfg, "head_dim", None) or r_cfg.hidden_size // r_cfg.num_attention_heads,
            source_num_heads=s_cfg.num_key_value_heads,
            target_num_heads=r_cfg.num_key_value_heads,
            hidden_dim=fuser["hidden_dim"],
            intermediate_dim=fuser["intermediate_dim"],
            num_layers=fuser["num_layers"],
            dropout=0.0,
            dtype=dtype,
        )
        # Open gates, as the cache2cache side (gate_init=+3): an eval gate is 1[logit > 0].
        for name in ("key_gate_logit", "value_gate_logit"):
            gate = getattr(projector, name, None)
            if isinstance(gate, torch.nn.Parameter):
                with torch.no_grad():
                    gate.fill_(spec["gate_logit"])
        projectors.append(projector.to(device))
    model = RosettaModel([receiver, sharer], base_model_idx=0, projector_list=projectors).eval()
    for i, (target, source) in enumerate(sorted(layer_map.items())):
        model.set_projector_config(
            source_model_idx=1,
            source_model_layer_idx=source,
            target_model_idx=0,
            target_model_layer_idx=target,
            projector_idx=i,
        )
    return model, projectors


class ProjectorClock:
    """Seconds spent inside the projectors' forward passes (forward pre- and post-hooks)."""

    def __init__(self, projectors: list[Any], device: torch.device) -> None:
        self.device = device
        self.seconds = 0.0
        self._start = 0.0
        for projector in projectors:
            projector.register_forward_pre_hook(self._before)
            projector.register_forward_hook(self._after)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _before(self, *args: Any) -> None:
        self._sync()
        self._start = time.perf_counter()

    def _after(self, *args: Any) -> None:
        self._sync()
        self.seconds += time.perf_counter() - self._start


def run(model: Any, clock: ProjectorClock, ids: torch.Tensor, mode: str, new_tokens: int) -> dict[str, Any]:
    """One timed generation of `new_tokens` greedy tokens (forced length) on the (B, N) prompt `ids`."""
    device = clock.device
    mask = torch.ones_like(ids)
    b, n = ids.shape
    clock.seconds = 0.0
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    with torch.no_grad():
        if mode == "receiver":
            out = model.model_list[0].generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                do_sample=False, pad_token_id=0,
            )  # fmt: skip
        elif mode == "c2c":
            # The reference's standard prompt encoding: fuse every prompt token but the last.
            fuse_all = torch.tensor([1, 0], dtype=torch.long, device=device).repeat(b, n - 1, 1)
            last = torch.tensor([-1, 0], dtype=torch.long, device=device).repeat(b, 1, 1)
            # eos -1 never matches a token, so the loop runs the full length, as `min_new_tokens` does
            out = model.generate(
                kv_cache_index=[fuse_all, last], input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                eos_token_id=-1, pad_token_id=0, do_sample=False,
            )  # fmt: skip
        else:
            raise ValueError(f"unknown mode {mode!r}")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "fuse_seconds": clock.seconds if mode == "c2c" else None,
        "generated": int(out.shape[1] - n),
    }


def main() -> int:
    """Build the reference model, then answer timing requests from stdin until it closes."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", required=True, help="the thu-nics/C2C checkout (its root)")
    parser.add_argument("--spec", required=True, help="JSON: receiver and sharer shapes, fuser sizes, layer map")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), required=True)
    parser.add_argument("--prompt_tokens", type=int, required=True)
    parser.add_argument("--max_batch", type=int, default=1)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    sys.path.insert(0, args.reference)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    try:
        import transformers

        model, projectors = build(json.loads(args.spec), getattr(torch, args.dtype), device)
        clock = ProjectorClock(projectors, device)
        vocab = min(model.model_list[0].config.vocab_size, model.model_list[1].config.vocab_size)
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(3, vocab, (args.max_batch, args.prompt_tokens), generator=g).to(device)
    except Exception as err:  # reported to the parent, which prints it with the fix
        reply({"error": f"building the reference model failed: {err!r}", "traceback": traceback.format_exc()})
        return 1
    reply({"ready": True, "transformers": transformers.__version__, "threads": torch.get_num_threads()})
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply(run(model, clock, ids[: request["batch"]], request["mode"], request["new_tokens"]))
        except Exception as err:
            reply({"error": repr(err), "traceback": traceback.format_exc()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
