"""Generate reference LRP/CLRP maps with the CLRP authors' own PyTorch code.

The authors' repository (Gu, Yang & Tresp, ACCV 2018: JindongGu/Contrastive-LRP) is NOT copied
into tf_clrp: this script takes the path of a checkout, or of its git directory, and executes
``CLRP/clrp_lib.py`` plus the two functions ``register_hooks`` and ``clrp`` of ``CLRP/run.py``
(the rest of run.py downloads VGG16 and reads images, so it is not run)::

    /work/venvs/torch/bin/python tests/references/generate_authors_clrp.py PATH

Their hooks hard-code torchvision VGG16's module indices and the first-layer bounds
(-2.1179, 2.64), so the model here is a narrow VGG16 with exactly that module layout on 64x64
inputs (5 pools -> 2x2, an identity ``AdaptiveAvgPool2d((2, 2))`` as torchvision's (7, 7) is on
224x224).  Writes ``tests/references/authors_clrp_refs.npz``; see AUTHORS_CLRP_NOTES.md.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

OUT = Path(__file__).with_name("authors_clrp_refs.npz")
SEED = 8  # chosen so that no map is degenerate (all relevance lost at a dead layer)
KEEP = 0.5  # weight density: sparse kernels keep class paths apart -> contrastive maps
FEATURES_CFG: list[int | str] = [4, 4, "M", 6, 6, "M", 8, 8, 8, "M", 8, 8, 8, "M", 8, 8, 8, "M"]
HIDDEN = 16
N_CLASSES = 6
SIZE = 64
LOW, HIGH = -2.1179, 2.64  # hard-coded in the authors' FirstConv_backward_hook
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
TARGETS = [0, 3, 5, 2]  # one per sample; a negative target logit is included on purpose


def read_source(repo: Path, relpath: str) -> str:
    """Read a file from a checkout (``repo/relpath``) or a git dir (``git show HEAD:relpath``)."""
    if (repo / relpath).is_file():
        return (repo / relpath).read_text()
    cmd = ["git", f"--git-dir={repo}", "show", f"HEAD:{relpath}"]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def load_authors_code(repo: Path) -> tuple[Any, Any]:
    """Exec clrp_lib.py as module ``clrp_lib``; return run.py's ``register_hooks`` and ``clrp``."""
    lib = types.ModuleType("clrp_lib")
    lib.__file__ = str(repo / "CLRP" / "clrp_lib.py")
    exec(compile(read_source(repo, "CLRP/clrp_lib.py"), lib.__file__, "exec"), lib.__dict__)
    sys.modules["clrp_lib"] = lib
    if str(lib.device) != "cpu":
        raise RuntimeError("run on CPU (CUDA_VISIBLE_DEVICES='') for float32 CPU references")

    run_src = read_source(repo, "CLRP/run.py")
    tree = ast.parse(run_src)
    wanted = {"register_hooks", "clrp"}
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    if {f.name for f in funcs} != wanted:
        raise RuntimeError("run.py no longer defines register_hooks and clrp")
    namespace: dict[str, Any] = {"torch": torch, "nn": nn, "np": np}
    namespace.update({k: v for k, v in lib.__dict__.items() if not k.startswith("_")})
    module = ast.Module(body=funcs, type_ignores=[])
    exec(compile(module, str(repo / "CLRP" / "run.py"), "exec"), namespace)
    return namespace["register_hooks"], namespace["clrp"]


class SmallVGG(nn.Module):
    """torchvision VGG16's module layout (features / avgpool / classifier) with few channels."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for v in FEATURES_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(c_in, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                c_in = int(v)
        self.features = nn.Sequential(*layers)
        self.spatial = SIZE // 32
        self.avgpool = nn.AdaptiveAvgPool2d((self.spatial, self.spatial))  # identity here
        flat = c_in * self.spatial**2
        self.classifier = nn.Sequential(
            nn.Linear(flat, HIDDEN),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(HIDDEN, HIDDEN),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(HIDDEN, N_CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same forward as torchvision.models.VGG."""
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def init_weights(model: SmallVGG, gen: torch.Generator) -> None:
    """Sparse He-normal kernels and small non-zero biases (the authors' rules ignore biases).

    Dense random z+ networks give nearly class-independent maps (|LRP - dual| ~ 1% of |LRP|);
    zeroing half of the weights keeps class paths apart, so CLRP maps differ by 2-20%.
    """
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=gen))
                mask = (torch.rand(m.weight.shape, generator=gen) < KEEP).to(m.weight)
                m.weight.mul_(mask / KEEP**0.5)


def make_inputs(gen: torch.Generator, n: int) -> torch.Tensor:
    """Smooth random 'photos' in [0, 1], ImageNet-normalised like the authors' preprocessing."""
    coarse = torch.rand((n, 3, 8, 8), generator=gen)
    img = nn.functional.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear")
    img = (img + 0.15 * torch.rand((n, 3, SIZE, SIZE), generator=gen)).clamp(0.0, 1.0)
    mean, std = torch.tensor(MEAN)[None, :, None, None], torch.tensor(STD)[None, :, None, None]
    return (img - mean) / std


def keras_weights(model: SmallVGG) -> dict[str, np.ndarray]:
    """Conv OIHW -> HWIO; Linear W -> W.T, first Linear's rows permuted from CHW to HWC order."""
    out: dict[str, np.ndarray] = {}
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    for i, conv in enumerate(convs):
        out[f"conv{i}__kernel"] = conv.weight.detach().permute(2, 3, 1, 0).numpy().copy()
        out[f"conv{i}__bias"] = conv.bias.detach().numpy().copy()
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    s, c = model.spatial, convs[-1].out_channels
    for i, lin in enumerate(linears):
        w = lin.weight.detach()
        if i == 0:  # torch flattens (C, H, W); Keras Flatten gives (H, W, C)
            w = w.reshape(w.shape[0], c, s, s).permute(0, 2, 3, 1).reshape(w.shape[0], -1)
        out[f"dense{i}__kernel"] = w.numpy().T.copy()
        out[f"dense{i}__bias"] = lin.bias.detach().numpy().copy()
    return out


def nhwc(a: np.ndarray) -> np.ndarray:
    """(1, C, H, W) -> (H, W, C)."""
    return a[0].transpose(1, 2, 0).copy()


def main(argv: list[str]) -> int:
    """Run the authors' LRP/CLRP on the small VGG and write the npz."""
    if len(argv) != 2:
        print(__doc__)
        return 2
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning)  # register_backward_hook deprecation
    warnings.filterwarnings("ignore", category=FutureWarning)
    register_hooks, clrp = load_authors_code(Path(argv[1]))

    gen = torch.Generator().manual_seed(SEED)
    model = SmallVGG()
    init_weights(model, gen)
    model = register_hooks(model=model).eval()
    x = make_inputs(gen, len(TARGETS))

    maps: dict[str, list[np.ndarray]] = {k: [] for k in ("lrp", "dual_type1", "dual_type2")}
    logits = []
    for i, target in enumerate(TARGETS):
        for key, kwargs in (
            ("lrp", {"contrastive_signal": False}),
            ("dual_type1", {"contrastive_signal": True, "CLRP": "type1"}),
            ("dual_type2", {"contrastive_signal": True, "CLRP": "type2"}),
        ):
            # a fresh forward per map: type1 zeroes out[0, target] in place through .detach()
            xi = x[i : i + 1].clone().requires_grad_(True)
            out = model(xi)
            if key == "lrp":
                logits.append(out.detach().numpy()[0].copy())
            maps[key].append(nhwc(clrp(out, target, **kwargs)))

    data: dict[str, np.ndarray] = keras_weights(model)
    data.update(
        x=x.permute(0, 2, 3, 1).numpy().astype(np.float32),
        targets=np.array(TARGETS, dtype=np.int64),
        logits=np.stack(logits).astype(np.float32),
        low=np.array(LOW, dtype=np.float32),
        high=np.array(HIGH, dtype=np.float32),
        lrp=np.stack(maps["lrp"]).astype(np.float32),
        dual_type1=np.stack(maps["dual_type1"]).astype(np.float32),
        dual_type2=np.stack(maps["dual_type2"]).astype(np.float32),
        meta__layout=np.array("maps NHWC, channel-resolved, raw (no normalisation)"),
        meta__repo_commit=np.array(repo_commit(Path(argv[1]))),
        meta__torch_version=np.array(torch.__version__),
    )
    lrp = data["lrp"].astype(np.float64)
    for kind in ("type1", "type2"):
        dual = data[f"dual_{kind}"].astype(np.float64)
        diff = per_sample_normalised(lrp) - per_sample_normalised(dual)  # unclipped: recompute
        data[f"clrp_{kind}"] = np.maximum(diff, 0.0).astype(np.float32)

    report(data)
    check_not_degenerate(data)
    np.savez_compressed(OUT, **data)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.1f} KiB)")
    return 0


def per_sample_normalised(a: np.ndarray) -> np.ndarray:
    """a / a.sum() per sample (the authors' visualize(): sm / sm.sum() over C, H, W)."""
    return a / a.sum(axis=(1, 2, 3), keepdims=True)


def check_not_degenerate(data: dict[str, np.ndarray]) -> None:
    """Each map must keep most of its seed (z+ conserves; a dead path loses everything)."""
    z = np.abs(data["logits"])
    rows = np.arange(len(data["targets"]))
    seeds = {
        "lrp": z[rows, data["targets"]],
        "dual_type1": z.sum(axis=1) - z[rows, data["targets"]],
        "dual_type2": z[rows, data["targets"]],
    }
    for key, seed in seeds.items():
        kept = data[key].sum(axis=(1, 2, 3)) / seed
        if (kept < 0.5).any() or not np.isfinite(data[key]).all():
            raise RuntimeError(f"degenerate {key}: kept fraction {kept}; pick another SEED")


def repo_commit(repo: Path) -> str:
    """HEAD commit of the authors' repo, or 'unknown'."""
    for args in (["git", f"--git-dir={repo}"], ["git", "-C", str(repo)]):
        res = subprocess.run([*args, "rev-parse", "HEAD"], capture_output=True, text=True)
        if res.returncode == 0:
            return res.stdout.strip()
    return "unknown"


def report(data: dict[str, np.ndarray]) -> None:
    """Print conservation and sanity figures."""
    for i, t in enumerate(data["targets"]):
        z = data["logits"][i]
        others = np.abs(z).sum() - abs(z[t])
        print(
            f"sample {i} target {t}: z_t={z[t]:+.4f} sum|z_others|={others:.4f}"
            f" | sum LRP={data['lrp'][i].sum():.4f} sum dual1={data['dual_type1'][i].sum():.4f}"
            f" sum dual2={data['dual_type2'][i].sum():.4f}"
            f" | CLRP1>0: {(data['clrp_type1'][i] > 0).mean():.2f}"
        )
    lo, hi = data["x"].min(), data["x"].max()
    print(f"input range [{lo:.3f}, {hi:.3f}] within bounds [{LOW}, {HIGH}]")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
