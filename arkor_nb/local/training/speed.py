"""How fast a job trains: the speed paths the plan picks, each a switch the tests can turn off.

- ``labels_only_loss``: run the decoder to hidden states and apply ``lm_head``
  and the cross-entropy only where a label is kept (a prompt's tokens need no
  logits; ``lm_head`` is 49152 x 576 on SmolLM2-135M). Same loss as the
  model's own: the sum over kept tokens of the float32 cross-entropy, divided
  by the tokens the Trainer counted (``num_items_in_batch``).
- ``padding_free``: the rows of a batch go in as one sequence with
  ``position_ids`` restarting at each row (what transformers'
  ``DataCollatorWithFlattening`` does; the attention mask is built from
  them, SDPA included), so no step computes padding. Needs the labels-only
  loss, which keeps a row's first token from being predicted from the row before.
- ``bf16_autocast``: matmuls in bfloat16 under ``torch.autocast`` where the
  device does them natively (CUDA with bf16, a CPU with AMX or AVX512-BF16);
  weights, LoRA and the optimizer stay float32.
- ``row_attention``: with padding-free batches on a CPU, attention runs per
  row (causal, within the row) instead of over the whole flattened batch with
  a block-diagonal mask: 8 rows of ~67 tokens cost 8 x 67^2, not 540^2, and
  no mask is read. Falls back to SDPA wherever the rows are not packed
  (generation, a padded batch). Same attention, another summation order.
- ``shared_prefix``: with attention per row, the tokens every row of a batch
  starts with (a chat template's system prompt: 23 of the triage rows' 67
  tokens) go in once, and each row's own tokens attend to that one copy
  (``position_ids`` continue from it). The prefix must predict nothing (no
  label up to its last token), so the loss is the same sum; the prefix's
  gradient is the sum of what every row sends it, as when each row has its
  own copy. 8 rows of ~67 tokens: 538 -> 377 tokens a step.
- ``bf16_base``: with bf16 autocast on a CPU, the frozen base model's Linear
  weights are stored in bfloat16 once, so autocast does not cast ~100M
  weights at every step. The matmuls see the very same bf16 values as under
  autocast alone (identical losses); LoRA, norms and embeddings stay float32.
  Task evals of a batch then run under the same autocast; a checkpoint sample
  (one prompt) runs on float32 copies of those weights, which is faster there.
- ``float32_sum``: under bf16 autocast, each LoRA layer adds its update to the
  frozen base's output in float32 (the base's bf16 output upcast first) and
  passes a float32 result on; peft would round the sum to bf16, where an
  update below 1/256 of the output is lost. Over seeds 42-45 this takes the
  bf16 path from 94.2 % to 96.3 % of held-out tickets (plain float32: 95.8 %),
  at no measurable cost (benchmarks/README.md, issue 20).
- ``threads``: torch's CPU threads (``ARKOR_NB_TORCH_THREADS``, 1 by default:
  on a shared 2-core machine a second thread makes steps erratic).

``ARKOR_NB_SPEED`` overrides the plan: ``plain`` (every path off, the standard
Trainer), or ``name=0|1`` pairs separated by commas.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, replace
from typing import Any

_FIELDS = ("labels_only_loss", "padding_free", "bf16_autocast", "row_attention", "shared_prefix",
           "bf16_base", "float32_sum")
ROW_ATTENTION = "arkor_rows"  # the name registered with transformers' AttentionInterface


@dataclass(frozen=True)
class SpeedPlan:
    labels_only_loss: bool = False
    padding_free: bool = False
    bf16_autocast: bool = False
    row_attention: bool = False
    shared_prefix: bool = False
    bf16_base: bool = False
    float32_sum: bool = False
    threads: int = 1

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def cpu_has_native_bf16() -> bool:
    """AMX or AVX512-BF16 in ``/proc/cpuinfo`` (False where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


def speed_plan(device: str, *, loads_in_4bit: bool = False, env: dict[str, str] | None = None) -> SpeedPlan:
    """The fastest paths for ``device``, then ``ARKOR_NB_SPEED`` on top."""
    import torch

    env = dict(os.environ if env is None else env)
    if device == "cuda":
        bf16 = False  # the model is loaded in bf16 on such GPUs already (models.load_model_and_tokenizer)
    elif device == "cpu":
        bf16 = cpu_has_native_bf16() and torch.backends.mkldnn.is_available()
    else:
        bf16 = False
    cpu = device == "cpu"
    plan = SpeedPlan(labels_only_loss=not loads_in_4bit, padding_free=not loads_in_4bit,
                     bf16_autocast=bf16, row_attention=cpu and not loads_in_4bit,
                     shared_prefix=cpu and not loads_in_4bit,
                     bf16_base=cpu and bf16, float32_sum=bf16,
                     threads=max(1, int(env.get("ARKOR_NB_TORCH_THREADS", "1"))))
    return apply_override(consistent(plan), env.get("ARKOR_NB_SPEED", ""))


def apply_override(plan: SpeedPlan, text: str) -> SpeedPlan:
    text = text.strip()
    if not text:
        return plan
    if text == "plain":
        return replace(plan, **{name: False for name in _FIELDS})
    changes: dict[str, bool] = {}
    for part in text.split(","):
        name, _, value = part.strip().partition("=")
        if name not in _FIELDS or value not in ("0", "1"):
            raise ValueError(f"ARKOR_NB_SPEED: {part!r} is not one of {', '.join(_FIELDS)} "
                             "set to 0 or 1 (or 'plain')")
        changes[name] = value == "1"
    return consistent(replace(plan, **changes))


def consistent(plan: SpeedPlan) -> SpeedPlan:
    """Turn off the paths whose prerequisite is off."""
    if plan.padding_free and not plan.labels_only_loss:
        plan = replace(plan, padding_free=False)  # the standard loss would cross row boundaries
    if plan.row_attention and not plan.padding_free:
        plan = replace(plan, row_attention=False)  # nothing packed to split
    if plan.shared_prefix and not plan.row_attention:
        plan = replace(plan, shared_prefix=False)  # only the row attention reads a shared prefix
    if plan.bf16_base and not plan.bf16_autocast:
        plan = replace(plan, bf16_base=False)  # a bf16 weight needs bf16 inputs
    if not plan.bf16_autocast:
        plan = replace(plan, float32_sum=False)  # float32 already
    return plan


def shared_prefix_length(features: list[dict[str, list[int]]]) -> int:
    """How many first tokens every row of the batch has in common and predicts nothing from:
    no label up to the prefix's last token and the token after it (each row's first
    prediction stays its own), and at least one token of each row left over."""
    if len(features) < 2:
        return 0
    first = features[0]["input_ids"]
    k = min(len(f["input_ids"]) for f in features) - 1
    for f in features:
        ids, labels = f["input_ids"], f["labels"]
        unlabelled = next((i for i, label in enumerate(labels) if label != -100), len(labels))
        k = min(k, unlabelled - 1)
        same = 0
        while same < k and ids[same] == first[same]:
            same += 1
        k = same
    return max(k, 0)


def flatten(features: list[dict[str, list[int]]], *, share_prefix: bool = False) -> dict[str, Any]:
    """A batch as one padding-free row: ``position_ids`` restart at each row's first token.

    ``shift_labels`` is what each position predicts (the next token's label,
    -100 at the end of every row), which the Trainer also counts its tokens by.
    With ``share_prefix`` the rows' common prefix (``shared_prefix_length``) comes
    once, first, and each row follows with its own tokens only, its ``position_ids``
    continuing from the prefix's: ``row_attention`` lets them see that one copy.
    """
    import torch

    k = shared_prefix_length(features) if share_prefix else 0
    ids: list[int] = list(features[0]["input_ids"][:k])
    labels: list[int] = [-100] * k
    positions: list[int] = list(range(k))
    shift: list[int] = [-100] * k
    for f in features:
        n = len(f["input_ids"])
        ids += f["input_ids"][k:]
        labels += f["labels"][k:]
        positions += range(k, n)
        shift += (f["labels"][1:] + [-100])[k:]
    return {"input_ids": torch.tensor([ids]), "position_ids": torch.tensor([positions]),
            "labels": torch.tensor([labels]), "shift_labels": torch.tensor([shift])}


def flatten_batch(features: list[dict[str, list[int]]], pad_id: int, *,
                  share_prefix: bool = False) -> dict[str, Any]:
    """``flatten`` with ``tokenize.collate``'s signature (no padding, so ``pad_id`` is unused)."""
    return flatten(features, share_prefix=share_prefix)


def autocast_context(plan: SpeedPlan, device: str) -> Any:
    import torch

    if plan.bf16_autocast and device in ("cpu", "cuda"):
        return torch.autocast(device_type=device, dtype=torch.bfloat16)
    return nullcontext()


# Generating from bf16 base weights on a CPU pays off from this many rows at once: one
# row's decode is a matrix-vector product, slower in bf16 than in float32 here. SmolLM2-135M,
# 1 thread, 24 tokens (`python -m benchmarks.probe_generate`): 1 row 3.18 s in bf16 vs 2.01 s
# on float32 copies (the upcast included), 4 rows 3.43 vs 3.46, 8 rows 3.87 vs 4.89,
# 16 rows 4.59 vs 5.90.
BF16_GENERATE_MIN_ROWS = 8


def inference_context(plan: SpeedPlan, device: str, model: Any, rows: int) -> Any:
    """How generation runs on the training model (samples, task evals) for ``rows`` prompts
    at once: with bf16 base weights, under autocast for a batch, and on float32 copies of
    those weights (for the duration only) for one or a few rows; otherwise float32 as is."""
    if not plan.bf16_base:
        return nullcontext()
    if device != "cpu" or rows >= BF16_GENERATE_MIN_ROWS:
        return autocast_context(plan, device)
    return float32_base(model)


@contextmanager
def float32_base(model: Any) -> Iterator[None]:
    """The frozen base Linear weights stored in bf16 as float32 (exact) while inside."""
    import torch

    kept: list[tuple[Any, Any, Any]] = []
    for module in model.modules():
        base = getattr(module, "base_layer", None)
        if isinstance(base, torch.nn.Linear) and base.weight.dtype == torch.bfloat16:
            bias = base.bias.data if base.bias is not None else None
            kept.append((base, base.weight.data, bias))
            base.weight.data = base.weight.data.float()
            if base.bias is not None:
                base.bias.data = base.bias.data.float()
    try:
        yield
    finally:
        for base, weight, bias in kept:
            base.weight.data = weight
            if bias is not None:
                base.bias.data = bias


def packed_segments(positions: Any) -> list[tuple[int, int, int]]:
    """``(start, end, first position)`` of each run of consecutive ``position_ids``."""
    import torch

    pos = positions[0]
    breaks = (torch.diff(pos) != 1).nonzero().flatten().add(1).tolist()
    bounds = [0, *breaks, pos.shape[0]]
    firsts = pos[bounds[:-1]].tolist()
    return list(zip(bounds[:-1], bounds[1:], firsts, strict=True))


def row_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                  dropout: float = 0.0, scaling: float | None = None, **kwargs: Any) -> Any:
    """Causal attention within each packed row (``position_ids`` restart at 0); a row whose
    positions start at ``q > 0`` continues the last row that started at 0, from its first
    ``q`` tokens (a shared prefix). Anything else: SDPA."""
    import torch
    import torch.nn.functional as F  # noqa: N812
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    positions = kwargs.get("position_ids")
    if (positions is None or query.shape[0] != 1 or query.shape[2] != key.shape[2]
            or dropout or kwargs.get("output_attentions")):
        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      dropout=dropout, scaling=scaling, **kwargs)
    gqa = getattr(module, "num_key_value_groups", 1) > 1
    outs = []
    prefix = 0
    for a, b, first in packed_segments(positions):
        if first == 0:
            prefix = a
            outs.append(F.scaled_dot_product_attention(query[:, :, a:b], key[:, :, a:b], value[:, :, a:b],
                                                       is_causal=True, scale=scaling, enable_gqa=gqa))
            continue
        keys = torch.cat([key[:, :, prefix:prefix + first], key[:, :, a:b]], dim=2)
        values = torch.cat([value[:, :, prefix:prefix + first], value[:, :, a:b]], dim=2)
        seen = torch.ones(b - a, first + b - a, dtype=torch.bool, device=query.device).tril(first)
        outs.append(F.scaled_dot_product_attention(query[:, :, a:b], keys, values, attn_mask=seen,
                                                   scale=scaling, enable_gqa=gqa))
    return torch.cat(outs, dim=2).transpose(1, 2).contiguous(), None


def prepare_model(model: Any, plan: SpeedPlan) -> Any:
    """Apply the plan's model-side paths (after the LoRA layers are added)."""
    import torch

    base_model = model.get_base_model() if hasattr(model, "get_base_model") else model
    if plan.row_attention and getattr(base_model.config, "_attn_implementation", None) == "sdpa":
        from transformers import AttentionInterface, AttentionMaskInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

        AttentionInterface.register(ROW_ATTENTION, row_attention)
        # the SDPA mask, for the fallback (a padded generation batch needs it)
        AttentionMaskInterface.register(ROW_ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
        base_model.set_attn_implementation(ROW_ATTENTION)
    if plan.bf16_base:
        for module in model.modules():
            base = getattr(module, "base_layer", None)  # peft's LoRA layer wraps the frozen Linear
            if isinstance(base, torch.nn.Linear) and not base.weight.requires_grad:
                base.weight.data = base.weight.data.to(torch.bfloat16)
                if base.bias is not None:
                    base.bias.data = base.bias.data.to(torch.bfloat16)
    if plan.float32_sum:
        from peft.tuners.lora import LoraLayer

        for module in model.modules():
            if isinstance(module, LoraLayer) and isinstance(module.get_base_layer(), torch.nn.Linear):
                module.base_layer.forward = _float_output(module.base_layer.forward)
    return model


def _float_output(forward: Any) -> Any:
    def run(x: Any, *args: Any, **kwargs: Any) -> Any:
        return forward(x, *args, **kwargs).float()
    return run


def labels_only_loss(model: Any, inputs: dict[str, Any], num_items_in_batch: Any) -> Any:
    """Causal-LM loss with ``lm_head`` applied only where a label is kept."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    labels = inputs["labels"]
    shift = inputs.get("shift_labels")
    if shift is None:
        shift = F.pad(labels, (0, 1), value=-100)[..., 1:]
    decoder_inputs = {k: inputs[k] for k in ("input_ids", "attention_mask", "position_ids") if k in inputs}
    hidden = base.get_decoder()(**decoder_inputs, use_cache=False).last_hidden_state
    keep = shift != -100
    # The logits in float32 even under bf16 autocast: only the kept tokens' rows (~100 a
    # step), so cheap, and bf16's 8-bit mantissa on logits of ~10-20 skews the loss's
    # gradient (no per-step bf16 copy of lm_head's 28M weights either).
    with torch.autocast(hidden.device.type, enabled=False):
        head = base.get_output_embeddings()
        logits = head(hidden[keep].to(head.weight.dtype)).float()
    loss = F.cross_entropy(logits, shift[keep], reduction="sum")
    if num_items_in_batch is None:
        return loss / keep.sum().clamp(min=1)
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(loss.device)
    return loss / num_items_in_batch


def trainer_class(plan: SpeedPlan, device: str) -> Any:
    """``transformers.Trainer``, or a subclass that takes the plan's loss and autocast paths."""
    from transformers import Trainer

    if not (plan.labels_only_loss or plan.bf16_autocast):
        return Trainer

    class FastTrainer(Trainer):
        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            with autocast_context(plan, device):
                if not plan.labels_only_loss:
                    return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
                loss = labels_only_loss(model, inputs, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                # as Trainer.compute_loss does: the divisor counted every process's tokens
                loss = loss * (self.accelerator.num_processes if self.args.n_gpu <= 1 else self.args.n_gpu)
            return (loss, {"loss": loss}) if return_outputs else loss

    return FastTrainer
