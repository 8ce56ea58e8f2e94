"""Speed of explaining a ViT-Ti/16: tf_clrp on keras_hub vs LXT's efficient AttnLRP on a
PyTorch twin of the same size (the measured rows are in BENCHMARKS.md, "Transformers:
ViT-Ti/16").

Keras: keras_hub ``ViTBackbone`` with ViT-Ti/16 sizes (224², patch 16, 12 blocks, 3 heads,
width 192, MLP 768; random weights: presets need the internet) + a 1000-class
``ViTImageClassifier`` head. Rows: the compiled Keras forward, then each tf_clrp analyzer
(``gradient`` and ``attention_rollout`` today; ``attnlrp``, ``attnlrp.cp``, ``clrp`` once
they are registered and explain the model, else the row says why not), each as a ratio to
the forward.

PyTorch (if installed): a ViT of the same sizes written here (pre-LN blocks, eager
attention, random weights), its forward, and LXT's efficient-mode AttnLRP on it (Gradient ×
Input with ``lxt.efficient.rules``: LayerNorm std detached, identity rule on GELU, the
attention's query and key gradients divided by 4 and the value's by 2, as LXT's
``wrap_attention_forward``), forward + backward, as a ratio to the torch forward.

Timing: best of ``--repeats`` after one warm-up (``speed_common.measure``), batch 8, 2
threads; memory: peak RSS during each measurement (VmHWM, reset per measurement).

Usage:
    python benchmarks/speed_transformers.py                  # ~2-4 min on 2 cores
    python benchmarks/speed_transformers.py --batch 2 --repeats 1 --no-torch
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import speed_common as sc  # noqa: E402

sc.set_thread_env()

import numpy as np  # noqa: E402

VIT_TI = {
    "image_shape": (224, 224, 3),
    "patch_size": 16,
    "num_layers": 12,
    "num_heads": 3,
    "hidden_dim": 192,
    "mlp_dim": 768,
}
CLASSES = 1000
TF_METHODS = ("gradient", "attention_rollout", "attnlrp", "attnlrp.cp", "clrp")


def keras_vit_ti(seed: int = 0) -> Any:
    """keras_hub ViT-Ti/16 with a 1000-class head, random weights."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.ViTBackbone(**VIT_TI)
    return keras_hub.models.ViTImageClassifier(
        backbone=backbone, num_classes=CLASSES, preprocessor=None
    )


def keras_rows(batch: int, repeats: int) -> list[tuple[str, sc.Timing | str, sc.Timing]]:
    """(method, Timing or refusal, forward Timing) for the Keras forward and tf_clrp."""
    import tensorflow as tf

    import tf_clrp

    tf.config.threading.set_intra_op_parallelism_threads(sc.THREADS)
    model = keras_vit_ti()
    x = np.random.default_rng(0).random((batch, *VIT_TI["image_shape"])).astype(np.float32)
    forward_fn = tf.function(lambda t: model(t, training=False))
    forward = sc.measure(lambda: forward_fn(tf.constant(x)).numpy(), repeats)
    rows: list[tuple[str, sc.Timing | str, sc.Timing]] = [("forward", forward, forward)]
    for name in TF_METHODS:
        if name not in tf_clrp.list_analyzers():
            rows.append((name, "not registered yet", forward))
            continue
        try:
            analyzer = tf_clrp.create_analyzer(name, model)
        except Exception as error:  # noqa: BLE001 - reported, not hidden
            rows.append((name, f"refused: {type(error).__name__}: {str(error)[:120]}", forward))
            continue
        rows.append(
            (
                name,
                sc.measure(lambda a=analyzer: a.analyze(x, neuron_selection=0), repeats),
                forward,
            )
        )
    return rows


def _lxt_efficient_rules() -> Any:
    """``lxt/efficient/rules.py`` loaded on its own: it needs only torch, while importing
    ``lxt.efficient`` pulls in Hugging Face ``transformers`` (for its model patches)."""
    import importlib.util

    spec = importlib.util.find_spec("lxt")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("No module named 'lxt'")
    path = os.path.join(list(spec.submodule_search_locations)[0], "efficient", "rules.py")
    module_spec = importlib.util.spec_from_file_location("lxt_efficient_rules", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def torch_rows(batch: int, repeats: int) -> list[tuple[str, sc.Timing | str, sc.Timing]]:
    """(method, Timing, forward Timing) for the PyTorch twin and LXT's efficient AttnLRP."""
    import torch
    from torch import nn

    rules = _lxt_efficient_rules()
    divide_gradient, identity_rule_implicit = rules.divide_gradient, rules.identity_rule_implicit

    torch.set_num_threads(sc.THREADS)
    torch.manual_seed(0)
    width, heads = VIT_TI["hidden_dim"], VIT_TI["num_heads"]
    patch, size = VIT_TI["patch_size"], VIT_TI["image_shape"][0]
    tokens = (size // patch) ** 2 + 1

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(width, eps=1e-6), nn.LayerNorm(width, eps=1e-6)
            self.qkv, self.out = nn.Linear(width, 3 * width), nn.Linear(width, width)
            self.fc1, self.fc2 = (
                nn.Linear(width, VIT_TI["mlp_dim"]),
                nn.Linear(VIT_TI["mlp_dim"], width),
            )

        def norm(self, ln: nn.LayerNorm, x: torch.Tensor, lrp: bool) -> torch.Tensor:
            if not lrp:
                return ln(x)
            mean = x.mean(-1, keepdim=True)
            std = ((x - mean) ** 2).mean(-1, keepdim=True).add(ln.eps).sqrt().detach()
            return (x - mean) / std * ln.weight + ln.bias

        def forward(self, x: torch.Tensor, lrp: bool) -> torch.Tensor:
            b, t, _ = x.shape
            q, k, v = (
                self.qkv(self.norm(self.ln1, x, lrp))
                .reshape(b, t, 3, heads, width // heads)
                .permute(2, 0, 3, 1, 4)
            )
            if lrp:
                q, k, v = divide_gradient(q, 4), divide_gradient(k, 4), divide_gradient(v, 2)
            a = torch.softmax(q @ k.transpose(-1, -2) / (width // heads) ** 0.5, -1)
            x = x + self.out((a @ v).transpose(1, 2).reshape(b, t, width))
            h = self.fc1(self.norm(self.ln2, x, lrp))
            h = identity_rule_implicit(nn.functional.gelu, h) if lrp else nn.functional.gelu(h)
            return x + self.fc2(h)

    class ViT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.patchify = nn.Conv2d(3, width, patch, stride=patch)
            self.token = nn.Parameter(torch.zeros(1, 1, width))
            self.position = nn.Parameter(torch.randn(1, tokens, width) * 0.02)
            self.blocks = nn.ModuleList(Block() for _ in range(VIT_TI["num_layers"]))
            self.ln, self.head = nn.LayerNorm(width, eps=1e-6), nn.Linear(width, CLASSES)

        def forward(self, x: torch.Tensor, lrp: bool = False) -> torch.Tensor:
            h = self.patchify(x).flatten(2).transpose(1, 2)
            h = torch.cat([self.token.expand(len(h), -1, -1), h], 1) + self.position
            for block in self.blocks:
                h = block(h, lrp)
            return self.head(self.ln(h)[:, 0])

    model = ViT().eval()
    model.requires_grad_(False)  # as LXT's docs advise: no parameter gradients
    x = torch.rand(batch, 3, size, size)

    def forward_only() -> None:
        with torch.no_grad():
            model(x)

    def attnlrp() -> None:
        inp = x.clone().requires_grad_(True)
        y = model(inp, lrp=True)
        y[:, 0].backward(y[:, 0].detach())
        (inp * inp.grad).detach().numpy()

    forward = sc.measure(forward_only, repeats)
    return [
        ("forward", forward, forward),
        ("LXT efficient AttnLRP (fwd+bwd)", sc.measure(attnlrp, repeats), forward),
    ]


def table(rows: list[tuple[str, str, sc.Timing | str, sc.Timing]], batch: int) -> str:
    """Markdown table of the rows (framework, method, timing or refusal, forward)."""
    out = ["| framework | method | s / image | × forward | peak RSS MiB |", "|---|---|---|---|---|"]
    for framework, method, timing, forward in rows:
        if isinstance(timing, str):
            out.append(f"| {framework} | {method} | {timing} | | |")
            continue
        out.append(
            f"| {framework} | {method} | {timing.best_s / batch:.4f} | "
            f"{timing.best_s / forward.best_s:.2f} | {timing.peak_rss_mib:.0f} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch twin")
    args = parser.parse_args(argv)
    rows = [("keras / tf_clrp", m, t, f) for m, t, f in keras_rows(args.batch, args.repeats)]
    if not args.no_torch:
        try:
            rows += [("torch / LXT", m, t, f) for m, t, f in torch_rows(args.batch, args.repeats)]
        except ImportError as error:
            rows.append(("torch / LXT", "all", f"skipped: {error}", rows[0][3]))
    print(
        f"ViT-Ti/16 (random weights), batch {args.batch}, {sc.THREADS} threads, best of "
        f"{args.repeats} after a warm-up; shared machine: indicative only.\n"
    )
    print(table(rows, args.batch))


if __name__ == "__main__":
    main()
