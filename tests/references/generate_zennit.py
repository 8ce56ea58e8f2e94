"""Generate Zennit reference attributions for tf_clrp's parity tests.

Run with the torch oracle venv (never part of tf_clrp's dependencies)::

    /work/venvs/torch/bin/python tests/references/generate_zennit.py

Writes ``tests/references/zennit_refs.npz`` next to this file.  Three small seeded torch models
(MLP, CNN, CNN with an eval-mode BatchNorm2d) are explained with Zennit's ``Gradient`` attributor
under one composite per configuration.  The initial relevance (``attr_output``) is
``one_hot(target) * output``.  References are computed in float64 (weights and inputs are
float32-representable) and cross-checked against a float32 run.  Weights are stored in Keras
layout (Dense ``W.T``, Conv ``OIHW -> HWIO``), inputs and attributions in NHWC.
"""

from __future__ import annotations

import copy
import importlib.metadata
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from zennit.attribution import Gradient
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import (
    EpsilonAlpha2Beta1,
    EpsilonGammaBox,
    EpsilonPlus,
    EpsilonPlusFlat,
    LayerMapComposite,
    SpecialFirstLayerMapComposite,
    layer_map_base,
)
from zennit.core import Composite
from zennit.rules import AlphaBeta, Epsilon, Flat, Gamma, WSquare, ZBox, ZPlus
from zennit.types import Linear as AnyLinear

OUT = Path(__file__).with_name("zennit_refs.npz")
SEED = 16  # chosen so that no reference moves > 2e-4 when the stabilizers change
N_SAMPLES = 4
N_CLASSES = 5
LOW, HIGH = -1.0, 1.0
MODELS = ("mlp", "cnn", "cnn_bn")

# name -> factory building the Zennit composite (fresh hooks every call)
ComposFactory = Callable[[], Composite]
STAB = 1e-6  # Zennit's default stabilizer (and default epsilon of its named composites)
STAB_CHECK = 1e-8  # references must not move (> MAX_SENSITIVITY) with every stabilizer this
MAX_SENSITIVITY = 2e-4  # relative to max|ref|; the parity tolerance is 1e-3


def make_configs(stab: float) -> dict[str, ComposFactory]:
    """All configurations; ``stab`` replaces every pure stabilizer (semantic epsilons stay)."""
    canon = [SequentialMergeBatchNorm]

    def all_layers(rule: Callable[[], object]) -> ComposFactory:
        """One rule on every Linear/Conv; ReLU Pass, AvgPool Norm, BN Pass (layer_map_base)."""
        return lambda: LayerMapComposite(
            layer_map=layer_map_base(stab) + [(AnyLinear, rule())],
            canonizers=[c() for c in canon],
        )

    def zbox_first_epsilon() -> Composite:
        """ZBox(LOW, HIGH) on the first Linear/Conv, Epsilon(0.25) on every other one."""
        return SpecialFirstLayerMapComposite(
            layer_map=layer_map_base(stab) + [(AnyLinear, Epsilon(epsilon=0.25))],
            first_map=[(AnyLinear, ZBox(low=LOW, high=HIGH, stabilizer=stab))],
            canonizers=[c() for c in canon],
        )

    named = {"epsilon": stab, "stabilizer": stab}  # Zennit defaults: both 1e-6, gamma 0.25
    return {
        "z": all_layers(lambda: Epsilon(epsilon=0.0)),
        "epsilon_0.25": all_layers(lambda: Epsilon(epsilon=0.25)),
        "zplus": all_layers(lambda: ZPlus(stabilizer=stab)),
        "zplus_nobias": all_layers(lambda: ZPlus(stabilizer=stab, zero_params="bias")),
        "alpha1beta0": all_layers(lambda: AlphaBeta(1.0, 0.0, stabilizer=stab)),
        "alpha2beta1": all_layers(lambda: AlphaBeta(2.0, 1.0, stabilizer=stab)),
        "alpha2beta1_nobias": all_layers(
            lambda: AlphaBeta(2.0, 1.0, stabilizer=stab, zero_params="bias")
        ),
        "gamma_0.25": all_layers(lambda: Gamma(gamma=0.25, stabilizer=stab)),
        "wsquare": all_layers(lambda: WSquare(stabilizer=stab)),
        "wsquare_nobias": all_layers(lambda: WSquare(stabilizer=stab, zero_params="bias")),
        "flat": all_layers(lambda: Flat(stabilizer=stab)),
        "zbox_first_epsilon_0.25": zbox_first_epsilon,
        "epsilon_plus": lambda: EpsilonPlus(**named, canonizers=[c() for c in canon]),
        "epsilon_plus_flat": lambda: EpsilonPlusFlat(**named, canonizers=[c() for c in canon]),
        "epsilon_gamma_box": lambda: EpsilonGammaBox(
            low=LOW, high=HIGH, **named, canonizers=[c() for c in canon]
        ),
        "epsilon_alpha2_beta1": lambda: EpsilonAlpha2Beta1(
            **named, canonizers=[c() for c in canon]
        ),
    }


CONFIGS = make_configs(STAB)
CHECK_CONFIGS = make_configs(STAB_CHECK)


class MLP(nn.Sequential):
    """Linear-ReLU-Linear-ReLU-Linear, 12 -> 16 -> 16 -> 5."""

    def __init__(self) -> None:
        super().__init__(
            nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, N_CLASSES)
        )


class CNN(nn.Sequential):
    """8x8x3 -> Conv3x3(6,same)-[BN]-ReLU-MaxPool2-Conv3x3(8,same)-ReLU-AvgPool4-Flatten-Linear."""

    def __init__(self, batch_norm: bool) -> None:
        layers: list[nn.Module] = [nn.Conv2d(3, 6, 3, padding=1)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(6))
        layers += [
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 8, 3, padding=1),
            nn.ReLU(),
            nn.AvgPool2d(4),  # 4x4 -> 1x1: CHW and HWC flatten orders coincide
            nn.Flatten(),
            nn.Linear(8, N_CLASSES),
        ]
        super().__init__(*layers)


def build_model(name: str, gen: torch.Generator) -> nn.Module:
    """Build one seeded float32 model in eval mode with non-trivial biases and BN statistics."""
    model: nn.Module = MLP() if name == "mlp" else CNN(batch_norm=name == "cnn_bn")
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear | nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) / fan_in**0.5)
                module.bias.copy_(0.3 * torch.randn(module.bias.shape, generator=gen))
            elif isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(0.5 + torch.rand(c, generator=gen))
                module.weight[1] = -0.7  # a negative scale flips the merged kernel's sign
                module.bias.copy_(0.2 * torch.randn(c, generator=gen))
                module.running_mean.copy_(0.3 * torch.randn(c, generator=gen))
                module.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=gen))
    return model.eval()


def make_input(name: str, gen: torch.Generator) -> torch.Tensor:
    """Inputs uniform in (LOW, HIGH): (N, 12) for the MLP, NCHW (N, 3, 8, 8) for the CNNs."""
    shape = (N_SAMPLES, 12) if name == "mlp" else (N_SAMPLES, 3, 8, 8)
    return LOW + (HIGH - LOW) * torch.rand(shape, generator=gen)


def to_keras_weights(name: str, model: nn.Module) -> dict[str, np.ndarray]:
    """Export parameters in Keras layout; keys ``{model}__{layer}__{kernel|bias|gamma|...}``."""
    out: dict[str, np.ndarray] = {}
    n_dense = n_conv = n_bn = 0
    for module in model.modules():
        if isinstance(module, nn.Linear):
            key = f"{name}__dense{n_dense}"
            n_dense += 1
            out[f"{key}__kernel"] = module.weight.detach().numpy().T.copy()
            out[f"{key}__bias"] = module.bias.detach().numpy().copy()
        elif isinstance(module, nn.Conv2d):
            key = f"{name}__conv{n_conv}"
            n_conv += 1
            out[f"{key}__kernel"] = module.weight.detach().permute(2, 3, 1, 0).numpy().copy()
            out[f"{key}__bias"] = module.bias.detach().numpy().copy()
        elif isinstance(module, nn.BatchNorm2d):
            key = f"{name}__bn{n_bn}"
            n_bn += 1
            out[f"{key}__gamma"] = module.weight.detach().numpy().copy()
            out[f"{key}__beta"] = module.bias.detach().numpy().copy()
            out[f"{key}__moving_mean"] = module.running_mean.numpy().copy()
            out[f"{key}__moving_variance"] = module.running_var.numpy().copy()
            out[f"{key}__epsilon"] = np.array(module.eps, dtype=np.float32)
    return out


def to_nhwc(a: np.ndarray) -> np.ndarray:
    """NCHW -> NHWC (2-D arrays pass through)."""
    return a.transpose(0, 2, 3, 1).copy() if a.ndim == 4 else a


def choose_targets(logits: np.ndarray) -> np.ndarray:
    """Sample 0: argmax; sample 1: argmin (a negative logit); others: fixed classes 2, 3, ..."""
    targets = np.arange(len(logits), dtype=np.int64) % logits.shape[1]
    targets[0], targets[1] = logits[0].argmax(), logits[1].argmin()
    return targets


def attribute(
    model: nn.Module, x: torch.Tensor, factory: ComposFactory, targets_np: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return (logits, attribution) for the seed one_hot(targets) * output."""
    targets = torch.as_tensor(targets_np)

    def seed(output: torch.Tensor) -> torch.Tensor:
        onehot = torch.nn.functional.one_hot(targets, output.shape[1]).to(output)
        return onehot * output

    attributor = Gradient(model=model, composite=factory())
    with attributor:
        output, relevance = attributor(x.clone().requires_grad_(True), seed)
    return output.detach().numpy(), relevance.detach().numpy()


def main() -> int:
    """Generate all references and write the npz."""
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(SEED)
    data: dict[str, np.ndarray] = {
        "meta__models": np.array(MODELS),
        "meta__configs": np.array(list(CONFIGS)),
        "meta__seed_convention": np.array("one_hot(target) * output"),
        "meta__zennit_version": np.array(importlib.metadata.version("zennit")),
        "meta__torch_version": np.array(torch.__version__),
        "low": np.array(LOW, dtype=np.float32),
        "high": np.array(HIGH, dtype=np.float32),
    }
    worst = 0.0
    for name in MODELS:
        model = build_model(name, gen)
        x = make_input(name, gen)
        data.update(to_keras_weights(name, model))
        data[f"{name}__x"] = to_nhwc(x.numpy()).astype(np.float32)
        with torch.no_grad():
            logits = model(x).numpy()
        targets = choose_targets(logits)
        data[f"{name}__targets"] = targets
        data[f"{name}__logits"] = logits.astype(np.float32)
        seed = np.zeros_like(logits)
        seed[np.arange(N_SAMPLES), targets] = logits[np.arange(N_SAMPLES), targets]
        data[f"{name}__seed"] = seed.astype(np.float32)
        model64 = copy.deepcopy(model).double().eval()
        for config in CONFIGS:
            _, ref64 = attribute(model64, x.double(), CONFIGS[config], targets)
            _, ref32 = attribute(model, x, CONFIGS[config], targets)
            _, alt64 = attribute(model64, x.double(), CHECK_CONFIGS[config], targets)
            if not np.isfinite(ref64).all():
                raise RuntimeError(f"non-finite reference for {name}/{config}")
            scale = np.abs(ref64).max(axis=tuple(range(1, ref64.ndim)), keepdims=True)
            rel32 = float((np.abs(ref32 - ref64) / scale).max())
            rel_stab = float((np.abs(alt64 - ref64) / scale).max())
            worst = max(worst, rel32, rel_stab)
            flag = "  <-- ill-conditioned" if max(rel32, rel_stab) > MAX_SENSITIVITY else ""
            print(
                f"{name:7s} {config:24s} max|ref|={scale.max():8.2e} "
                f"f32-vs-f64={rel32:.0e} stab-1e-6-vs-1e-8={rel_stab:.0e}{flag}"
            )
            data[f"{name}__{config}"] = to_nhwc(ref64).astype(np.float32)
    if worst > MAX_SENSITIVITY:
        raise RuntimeError(f"references depend on precision/stabilizers ({worst:.1e}): new SEED")
    np.savez_compressed(OUT, **data)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.1f} KiB); worst sensitivity {worst:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
