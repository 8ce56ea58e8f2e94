"""Zennit and the CLRP authors' code: speed on torch VGG16/ResNet50 (peer of ``speed.py``).

Runs in the torch venv (never a tf_clrp dependency); torchvision is not needed: the models
are torchvision's VGG16 / ResNet50 (v1.5) written out in plain torch with the same module
layout, layer sizes and initialisation, random weights::

    /work/venvs/torch/bin/python benchmarks/speed_torch.py zennit --model vgg16 \
        --json benchmarks/results/speed_zennit_vgg16.json
    /work/venvs/torch/bin/python benchmarks/speed_torch.py authors PATH --batch 1 \
        --json benchmarks/results/speed_authors_vgg16.json

``zennit``: Zennit's ``Gradient`` attributor with the ``EpsilonPlus`` composite (ResNet:
``ResNetCanonizer``, i.e. BatchNorm merged and the residual sum as a module) and without a
composite (the plain gradient), seeded with one-hot(class 1) × output, batch 8.

``authors``: the CLRP authors' code (Gu, Yang & Tresp 2018; JindongGu/Contrastive-LRP),
read at run time from a checkout or git directory ``PATH`` (it is not part of tf_clrp):
``CLRP/clrp_lib.py`` plus ``register_hooks`` and ``clrp`` from ``CLRP/run.py``. One CLRP
map (type1) per image exactly as their ``run.py`` makes it: one forward, the LRP map, the
dual map, then ``max(0, lrp/Σlrp − dual/Σdual)``. Their code handles batch 1 only.

The forward is ``model(x)`` under ``torch.no_grad()`` in the same process. Threads:
``torch.set_num_threads(2)``, one inter-op thread; denormals flushed to zero (as TF does).
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import os
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import speed_common as sc  # noqa: E402

sc.set_thread_env()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

TARGET_CLASS = 1
VGG16_CFG: list[int | str] = [
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    "M",
]


# ----------------------------------------------------------------------------- models
class VGG16(nn.Module):
    """torchvision.models.vgg16: features / avgpool / classifier with the same indices."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for v in VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(c_in, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                c_in = int(v)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(4096, num_classes),
        )
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same forward as torchvision.models.VGG."""
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _bottleneck_base() -> type[nn.Module]:
    """The torchvision (stub) Bottleneck class, so that Zennit's ResNetCanonizer sees ours."""
    try:
        from torchvision.models.resnet import Bottleneck

        return Bottleneck
    except ImportError:
        return nn.Module


class Bottleneck(_bottleneck_base()):  # type: ignore[misc]
    """torchvision's ResNet v1.5 bottleneck (stride on the 3x3 conv), same attribute names."""

    expansion = 4

    def __init__(
        self, c_in: int, width: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """conv-bn-relu ×2, conv-bn, + identity (or downsample), relu."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """torchvision.models.resnet50 (v1.5), same module names and initialisation."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        c_in = 64
        stages = []
        for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            c_out = width * Bottleneck.expansion
            down = None
            if stride != 1 or c_in != c_out:
                down = nn.Sequential(
                    nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
                )
            layer = [Bottleneck(c_in, width, stride, down)]
            layer += [Bottleneck(c_out, width) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layer))
            c_in = c_out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same forward as torchvision.models.ResNet."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build_model(name: str) -> nn.Module:
    """VGG16 or ResNet50 with random weights, eval mode."""
    torch.manual_seed(0)
    return {"vgg16": VGG16, "resnet50": ResNet50}[name]().eval()


def make_input(batch: int, size: int) -> torch.Tensor:
    """The same uniform(-1, 1) batch as the TF benchmarks, NCHW."""
    x = np.random.default_rng(0).uniform(-1, 1, (batch, size, size, 3)).astype("float32")
    return torch.from_numpy(x.transpose(0, 3, 1, 2).copy())


def measure_forward(model: nn.Module, x: torch.Tensor, args: argparse.Namespace) -> Any:
    """``model(x)`` under no_grad."""

    def forward() -> None:
        with torch.no_grad():
            model(x)

    return sc.measure(forward, args.repeats, args.min_repeats, args.budget)


def forward_records(
    peer: str, model_name: str, args: argparse.Namespace
) -> tuple[nn.Module, torch.Tensor, Any, list[sc.Record]]:
    """Builds the model and input, times the plain forward and prints its record; returns
    (model, input, forward timing, records so far)."""
    model = build_model(model_name)
    x = make_input(args.batch, args.size)
    forward = measure_forward(model, x, args)
    records = [
        sc.make_record(
            peer,
            model_name,
            "forward",
            args.batch,
            args.size,
            forward,
            forward,
            "torch model(x) under no_grad",
        )
    ]
    sc.print_records(records)
    return model, x, forward, records


# ----------------------------------------------------------------------------- zennit
def run_zennit(args: argparse.Namespace) -> list[sc.Record]:
    """Zennit EpsilonPlus and the plain gradient, with the torch forward."""
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlus

    model, x, forward, records = forward_records("zennit", args.model, args)
    mask = torch.zeros((args.batch, 1000))
    mask[:, TARGET_CLASS] = 1.0

    def seed(y: torch.Tensor) -> torch.Tensor:
        return y * mask

    for method in [m for m in args.methods.split(",") if m]:
        if method == "epsilon_plus":
            canonizers = None
            if args.model == "resnet50":
                from zennit.torchvision import ResNetCanonizer

                canonizers = [ResNetCanonizer()]
            composite = EpsilonPlus(canonizers=canonizers)
            note = "EpsilonPlus" + (" + ResNetCanonizer" if canonizers else "")
        elif method == "gradient":
            composite, note = None, "Gradient attributor, no composite"
        else:
            raise ValueError(f"unknown zennit method {method!r}")
        start = time.perf_counter()
        with Gradient(model=model, composite=composite) as attributor:
            setup = time.perf_counter() - start
            xi = x.clone()
            timing = sc.measure(
                lambda a=attributor, xi=xi: a(xi, seed)[1],
                args.repeats,
                args.min_repeats,
                args.budget,
            )
        timing.setup_s = setup
        name = "lrp.epsilon_plus" if method == "epsilon_plus" else "gradient"
        records.append(
            sc.make_record("zennit", args.model, name, args.batch, args.size, timing, forward, note)
        )
        sc.print_records(records[-1:])
    return records


# ----------------------------------------------------------------------------- authors
def _read_source(repo: Path, relpath: str) -> str:
    """A file of a checkout (``repo/relpath``) or of a git dir (``git show HEAD:relpath``)."""
    if (repo / relpath).is_file():
        return (repo / relpath).read_text()
    cmd = ["git", f"--git-dir={repo}", "show", f"HEAD:{relpath}"]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def load_authors_code(repo: Path) -> tuple[Any, Any]:
    """Exec ``CLRP/clrp_lib.py`` as module ``clrp_lib``; return run.py's register_hooks, clrp."""
    lib = types.ModuleType("clrp_lib")
    lib.__file__ = str(repo / "CLRP" / "clrp_lib.py")
    exec(compile(_read_source(repo, "CLRP/clrp_lib.py"), lib.__file__, "exec"), lib.__dict__)
    sys.modules["clrp_lib"] = lib
    tree = ast.parse(_read_source(repo, "CLRP/run.py"))
    wanted = {"register_hooks", "clrp"}
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    if {f.name for f in funcs} != wanted:
        raise RuntimeError("CLRP/run.py no longer defines register_hooks and clrp")
    namespace: dict[str, Any] = {"torch": torch, "nn": nn, "np": np}
    namespace.update({k: v for k, v in lib.__dict__.items() if not k.startswith("_")})
    exec(
        compile(ast.Module(body=funcs, type_ignores=[]), str(repo / "CLRP" / "run.py"), "exec"),
        namespace,
    )
    return namespace["register_hooks"], namespace["clrp"]


def run_authors(args: argparse.Namespace) -> list[sc.Record]:
    """The authors' CLRP (type1) per image, and the torch forward of the same VGG16."""
    warnings.filterwarnings("ignore", category=UserWarning)  # register_backward_hook
    warnings.filterwarnings("ignore", category=FutureWarning)
    register_hooks, clrp = load_authors_code(Path(args.repo))
    if args.model != "vgg16":
        raise ValueError("the authors' hooks hard-code VGG16's module indices")
    # the forward is timed before the hooks are registered
    model, x, forward, records = forward_records("authors", "vgg16", args)
    model = register_hooks(model=model)

    def clrp_map() -> np.ndarray:
        """run.py's per-image steps; the division by the sums is their visualize()."""
        maps = []
        for i in range(len(x)):
            xi = x[i : i + 1].clone().requires_grad_(True)
            out = model(xi)
            sm_lrp = clrp(out, TARGET_CLASS, contrastive_signal=False)
            sm_contrast = clrp(out, TARGET_CLASS, contrastive_signal=True, CLRP="type1")
            maps.append(np.maximum(sm_lrp / sm_lrp.sum() - sm_contrast / sm_contrast.sum(), 0))
        return np.concatenate(maps)

    timing = sc.measure(clrp_map, args.repeats, args.min_repeats, args.budget)
    records.append(
        sc.make_record(
            "authors",
            "vgg16",
            "clrp",
            args.batch,
            args.size,
            timing,
            forward,
            "one CLRP map (type1): forward + LRP map + dual map, one image at a time",
        )
    )
    sc.print_records(records[-1:])
    return records


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("peer", choices=("zennit", "authors"))
    parser.add_argument(
        "repo",
        nargs="?",
        default=None,
        help="authors: checkout or git dir of JindongGu/Contrastive-LRP",
    )
    parser.add_argument("--model", default="vgg16", help="vgg16 or resnet50 (zennit)")
    parser.add_argument("--batch", type=int, default=None, help="default: zennit 8, authors 1")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--methods", default="epsilon_plus,gradient", help="zennit methods")
    sc.add_timing_args(parser)
    args = parser.parse_args()
    if args.peer == "authors" and not args.repo:
        parser.error("authors needs the path of their repository (checkout or git dir)")
    if args.batch is None:
        args.batch = 8 if args.peer == "zennit" else 1
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.set_flush_denormal(True)
    sc.print_header()
    records = run_zennit(args) if args.peer == "zennit" else run_authors(args)
    if args.json:
        versions = {
            "torch": torch.__version__,
            "zennit": importlib.metadata.version("zennit"),
            "numpy": np.__version__,
        }
        extra: dict[str, Any] = {"command": sys.argv}
        if args.peer == "authors":
            extra["authors_commit"] = _commit(Path(args.repo))
        sc.save_records(args.json, records, versions, **extra)


def _commit(repo: Path) -> str:
    """HEAD commit of the authors' repository, or 'unknown'."""
    for base in (["git", f"--git-dir={repo}"], ["git", "-C", str(repo)]):
        res = subprocess.run([*base, "rev-parse", "HEAD"], capture_output=True, text=True)
        if res.returncode == 0:
            return res.stdout.strip()
    return "unknown"


if __name__ == "__main__":
    main()
