"""Generates tests/references/attnlrp_refs.npz: AttnLRP and CP-LRP maps of LXT's explicit rules.

The two small Keras transformers of ``transformer_models.py`` (a ViT and a text transformer,
seeded random weights) are copied into float64 PyTorch twins written with LXT's explicit
rule functions (``lxt.explicit.functional``: ``linear_epsilon``, ``softmax``, ``matmul``,
``layer_norm``, ``add2``, ``mul2``, ``mean``; ``lxt.explicit.rules``: ``identity``,
``epsilon_lrp``). The twin's logits must equal Keras' to 1e-5. For every sample and every
class c the script stores the input relevance of a unit seed on logit c:

* AttnLRP: relevance through every rule of the paper (softmax with the −p·ΣR term, Q·Kᵀ and
  A·V with the uniform ε rule, LayerNorm with std held constant, identity on GELU and on
  the 1/√d scaling, ε on every linear layer, residual add and the mean over tokens);
* CP-LRP (``attnlrp.cp``): the same, but the attention weights A are constants (no
  relevance through queries and keys; A·V is an ε rule with all relevance to V, as LXT's
  ``multi_head_attention_cp``).

Every rule is linear in the seed, so any seed the analyzers use is a combination of these
unit maps: AttnLRP of class c = z_c · R_c (the logit as seed); CLRP (others) target
|z_j| · R_j, dual Σ_{k≠j} |z_k| · R_k.

ViT maps live at the input pixels (the patchify Conv2D is an ε-rule linear layer on the
unfolded patches); text maps at the token Embedding's output, (tokens, width) per sample.

A float64 numpy re-implementation of the same rules (``NumpyAttnLRP``, written from the
paper's formulas, sharing no code with LXT) must reproduce the twin's maps; it also measures
conservation rule by rule (printed; recorded in ATTNLRP_NOTES.md).

Usage:
    python tests/references/generate_attnlrp.py          # writes attnlrp_refs.npz (~20 s)
    python tests/references/generate_attnlrp.py --check  # recompute, compare, write nothing
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from lxt.explicit import functional as lf  # noqa: E402
from lxt.explicit import rules as lrules  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import transformer_models as tm  # noqa: E402

OUT = os.path.join(HERE, "attnlrp_refs.npz")
VIT_SEED, VIT_WEIGHTS_SEED = 0, 10
TEXT_SEED, TEXT_WEIGHTS_SEED = 1, 11
N_SAMPLES = 4
LINEAR_EPSILON = 1e-6  # LXT linear_epsilon / layer_norm / mean default
torch.set_default_dtype(torch.float64)


# ----------------------------------------------------------------------------- models
def keras_models() -> dict[str, Any]:
    """The two reference models with their seeded random weights."""
    vit = tm.randomize(tm.build_vit(seed=VIT_SEED), VIT_WEIGHTS_SEED)
    text = tm.randomize(tm.build_text_transformer(seed=TEXT_SEED), TEXT_WEIGHTS_SEED)
    return {"vit": vit, "text": text}


def reference_inputs(models: dict[str, Any]) -> dict[str, np.ndarray]:
    """Fixed inputs: smooth random images in [0, 1]; token ids."""
    rng = np.random.default_rng(2026)
    h, w, c = models["vit"].input_shape[1:]
    images = rng.random((N_SAMPLES, h, w, c))
    images = 0.5 * images + 0.5 * np.roll(images, 1, axis=1)  # some spatial structure
    ids = rng.integers(0, 30, size=(N_SAMPLES, models["text"].input_shape[1]))
    return {"vit": images.astype(np.float32), "text": ids.astype(np.int32)}


def weights_of(model: Any) -> dict[str, np.ndarray]:
    """Keras weights by variable path, float64."""
    return {v.path: np.asarray(v.numpy(), np.float64) for v in model.weights}


# ----------------------------------------------------------------------------- LXT twin
class Twin:
    """Float64 PyTorch twin of a reference model, written with LXT's explicit rules.

    Args:
        weights: Keras weights by variable path.
        kind: "vit" or "text".
        mode: "attnlrp" or "cp" (attention weights held constant).
        patch: ViT patch size.
        heads: attention heads.
        depth: blocks.
        ln_epsilon: LayerNormalization epsilon (Keras default 1e-3).
    """

    def __init__(
        self,
        weights: dict[str, np.ndarray],
        kind: str,
        mode: str = "attnlrp",
        patch: int = 4,
        heads: int = 2,
        depth: int = 2,
        ln_epsilon: float = 1e-3,
    ):
        self.w = {k: torch.tensor(v) for k, v in weights.items()}
        self.kind, self.mode, self.patch, self.heads, self.depth = kind, mode, patch, heads, depth
        self.ln_epsilon = ln_epsilon

    def linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        kernel = self.w[f"{name}/kernel"]
        return lf.linear_epsilon(
            x,
            kernel.reshape(-1, kernel.shape[-1]).T,
            self.w[f"{name}/bias"].reshape(-1),
            LINEAR_EPSILON,
        )

    def layer_norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return lf.layer_norm(x, self.w[f"{name}/gamma"], self.w[f"{name}/beta"], self.ln_epsilon)

    def attention(self, x: torch.Tensor, name: str) -> torch.Tensor:
        b, t, d = x.shape
        key_dim = self.w[f"{name}/query/kernel"].shape[-1]

        def project(part: str) -> torch.Tensor:
            kernel = self.w[f"{name}/{part}/kernel"]  # (D, heads, key_dim)
            y = lf.linear_epsilon(
                x,
                kernel.reshape(d, -1).T,
                self.w[f"{name}/{part}/bias"].reshape(-1),
                LINEAR_EPSILON,
            )
            return y.reshape(b, t, self.heads, key_dim).permute(0, 2, 1, 3)

        value = project("value")
        if self.mode == "cp":
            with torch.no_grad():
                q, k = project("query"), project("key")
                weights = torch.softmax(q @ k.transpose(-1, -2) / np.sqrt(key_dim), -1)
            out = lrules.epsilon_lrp(torch.matmul, LINEAR_EPSILON, weights.detach(), value)
        else:
            q, k = project("query"), project("key")
            q = lf.mul2(q, 1.0 / np.sqrt(key_dim))  # a constant factor: identity
            weights = lf.softmax(lf.matmul(q, k.transpose(-1, -2)), -1)
            out = lf.matmul(weights, value)
        out = out.permute(0, 2, 1, 3).reshape(b, t, -1)
        kernel = self.w[f"{name}/attention_output/kernel"]  # (heads, key_dim, D)
        return lf.linear_epsilon(
            out, kernel.reshape(-1, d).T, self.w[f"{name}/attention_output/bias"], LINEAR_EPSILON
        )

    def block(self, x: torch.Tensor, i: int) -> torch.Tensor:
        h = self.attention(self.layer_norm(x, f"block{i}_ln1"), f"block{i}_mha")
        x = lf.add2(x, h)
        h = self.linear(self.layer_norm(x, f"block{i}_ln2"), f"block{i}_mlp1")
        h = lrules.identity(lambda t: F.gelu(t, approximate="none"), h)
        return lf.add2(x, self.linear(h, f"block{i}_mlp2"))

    def embed_image(self, images: torch.Tensor) -> torch.Tensor:
        """Patchify as an ε-rule linear layer on unfolded (row, col, channel) patches."""
        b, hh, ww, c = images.shape
        p = self.patch
        patches = images.reshape(b, hh // p, p, ww // p, p, c).permute(0, 1, 3, 2, 4, 5)
        patches = patches.reshape(b, (hh // p) * (ww // p), p * p * c)
        tokens = self.linear(patches, "patchify")
        token = self.w["class_token_and_positions/class_token"].expand(b, 1, -1)
        tokens = torch.cat([token, tokens], dim=1)  # the class token is a constant
        return lf.add2(tokens, self.w["class_token_and_positions/position"].expand(b, -1, -1))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits; ``x`` = images (ViT) or the token Embedding's output (text)."""
        if self.kind == "vit":
            h = self.embed_image(x)
        else:
            h = lf.add2(x, self.w["positions/position"].expand(x.shape[0], -1, -1))
        for i in range(self.depth):
            h = self.block(h, i)
        h = self.layer_norm(h, "final_ln")
        h = h[:, 0] if self.kind == "vit" else lf.mean(h, 1, False, LINEAR_EPSILON)
        return self.linear(h, "head")


def twin_input(kind: str, weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The twin's input: the images, or the Embedding's output for token ids."""
    return np.asarray(x, np.float64) if kind == "vit" else weights["embedding/embeddings"][x]


def unit_relevance(twin: Twin, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, C), relevance (N, C, *x.shape[1:]) of a unit seed on each logit)."""
    logits = twin(torch.tensor(x)).detach().numpy()
    maps = np.zeros((x.shape[0], logits.shape[1]) + x.shape[1:])
    for c in range(logits.shape[1]):
        inp = torch.tensor(x, requires_grad=True)
        out = twin(inp)
        seed = torch.zeros_like(out)
        seed[:, c] = 1.0
        out.backward(seed)
        maps[:, c] = inp.grad.numpy()
    return logits, maps


# ----------------------------------------------------------------------------- numpy check
class NumpyAttnLRP:
    """AttnLRP in float64 numpy from the paper's formulas (no LXT, no torch).

    ``record`` collects (rule, Σ R_in, Σ R_out) of every rule application of the last
    backward pass, for the conservation table.
    """

    def __init__(
        self,
        weights: dict[str, np.ndarray],
        kind: str,
        patch: int = 4,
        heads: int = 2,
        depth: int = 2,
        ln_epsilon: float = 1e-3,
        eps_linear: float = 1e-6,
        eps_product: float = 1e-8,
    ):
        self.w, self.kind, self.patch, self.heads, self.depth = weights, kind, patch, heads, depth
        self.ln_epsilon, self.eps_linear, self.eps_product = ln_epsilon, eps_linear, eps_product
        self.record: list[tuple[str, float, float]] = []

    def _note(self, rule: str, r_in: Any, r_out: np.ndarray) -> None:
        total_in = (
            sum(float(np.sum(r)) for r in r_in) if isinstance(r_in, tuple) else float(np.sum(r_in))
        )
        self.record.append((rule, total_in, float(np.sum(r_out))))

    # each op returns (output, backward: R_out -> R_in)
    def linear(self, x: np.ndarray, kernel: np.ndarray, bias: np.ndarray):
        z = x @ kernel + bias

        def back(r: np.ndarray) -> np.ndarray:
            r_in = x * ((r / (z + self.eps_linear)) @ kernel.T)
            self._note("linear ε", r_in, r)
            return r_in

        return z, back

    def add(self, a: np.ndarray, b: np.ndarray, eps: float):
        z = a + b

        def back(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            s = r / (z + eps)
            self._note("add ε", (a * s, b * s), r)
            return a * s, b * s

        return z, back

    def product(self, a: np.ndarray, b: np.ndarray):
        """Batched matmul a @ b: ε rule with the output doubled, half to each factor."""
        z = a @ b

        def back(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            s = r / (2.0 * z + self.eps_product)
            ra = a * (s @ np.swapaxes(b, -1, -2))
            rb = b * (np.swapaxes(a, -1, -2) @ s)
            self._note("product uniform ε", (ra, rb), r)
            return ra, rb

        return z, back

    def softmax(self, s: np.ndarray):
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)

        def back(r: np.ndarray) -> np.ndarray:
            r_in = s * (r - p * r.sum(-1, keepdims=True))
            self._note("softmax", r_in, r)
            return r_in

        return p, back

    def layer_norm(self, x: np.ndarray, name: str):
        gamma, beta = self.w[f"{name}/gamma"], self.w[f"{name}/beta"]
        mean = x.mean(-1, keepdims=True)
        std = np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + self.ln_epsilon)
        y = (x - mean) / std * gamma + beta

        def back(r: np.ndarray) -> np.ndarray:
            # ε rule on the linear map x -> (x - mean(x)) · γ/std (std a constant), bias β
            s = r / (y + self.eps_linear) * gamma / std
            r_in = x * (s - s.mean(-1, keepdims=True))
            self._note("layer norm", r_in, r)
            return r_in

        return y, back

    def mean_tokens(self, x: np.ndarray):
        z = x.mean(1)

        def back(r: np.ndarray) -> np.ndarray:
            r_in = x * (r / (x.sum(1) + self.eps_linear))[:, None]
            self._note("mean ε", r_in, r)
            return r_in

        return z, back

    def attention(self, x: np.ndarray, name: str):
        b, t, d = x.shape
        w = self.w
        key_dim = w[f"{name}/query/kernel"].shape[-1]
        steps = []

        def project(part: str) -> np.ndarray:
            y, back = self.linear(
                x, w[f"{name}/{part}/kernel"].reshape(d, -1), w[f"{name}/{part}/bias"].reshape(-1)
            )
            steps.append(back)
            return y.reshape(b, t, self.heads, key_dim).transpose(0, 2, 1, 3)

        q, k, v = project("query"), project("key"), project("value")
        q = q / np.sqrt(key_dim)  # identity
        scores, back_scores = self.product(q, np.swapaxes(k, -1, -2))
        p, back_softmax = self.softmax(scores)
        o, back_av = self.product(p, v)
        merged = o.transpose(0, 2, 1, 3).reshape(b, t, -1)
        out, back_out = self.linear(
            merged,
            w[f"{name}/attention_output/kernel"].reshape(-1, d),
            w[f"{name}/attention_output/bias"],
        )
        self.attention_weights.append(p)

        def back(r: np.ndarray) -> np.ndarray:
            r = back_out(r).reshape(b, t, self.heads, key_dim).transpose(0, 2, 1, 3)
            r_p, r_v = back_av(r)
            r_q, r_kt = back_scores(back_softmax(r_p))
            heads_to_tokens = [r_q, np.swapaxes(r_kt, -1, -2), r_v]
            r_x = 0.0
            for rel, step in zip(heads_to_tokens, steps):
                r_x = r_x + step(rel.transpose(0, 2, 1, 3).reshape(b, t, -1))
            return r_x

        return out, back

    def relevance(self, x: np.ndarray, seed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits, input relevance of ``seed`` (N, C)); x as ``twin_input``."""
        w = self.w
        self.record, self.attention_weights = [], []
        backs = []
        if self.kind == "vit":
            n, hh, ww, c = x.shape
            p = self.patch
            patches = x.reshape(n, hh // p, p, ww // p, p, c).transpose(0, 1, 3, 2, 4, 5)
            patches = patches.reshape(n, -1, p * p * c)
            kernel = w["patchify/kernel"]
            h, back_patch = self.linear(
                patches, kernel.reshape(-1, kernel.shape[-1]), w["patchify/bias"]
            )
            token = np.broadcast_to(w["class_token_and_positions/class_token"], (n, 1, h.shape[2]))
            h = np.concatenate([token, h], axis=1)
            h, back_pos = self.add(
                h, np.broadcast_to(w["class_token_and_positions/position"], h.shape), 1e-8
            )
        else:
            h, back_pos = self.add(x, np.broadcast_to(w["positions/position"], x.shape), 1e-8)
        for i in range(self.depth):
            ln, back_ln1 = self.layer_norm(h, f"block{i}_ln1")
            a, back_att = self.attention(ln, f"block{i}_mha")
            h1, back_add1 = self.add(h, a, 1e-8)
            ln2, back_ln2 = self.layer_norm(h1, f"block{i}_ln2")
            m1, back_m1 = self.linear(ln2, w[f"block{i}_mlp1/kernel"], w[f"block{i}_mlp1/bias"])
            g = 0.5 * m1 * (1.0 + _erf(m1 / np.sqrt(2.0)))  # GELU: identity rule
            m2, back_m2 = self.linear(g, w[f"block{i}_mlp2/kernel"], w[f"block{i}_mlp2/bias"])
            h, back_add2 = self.add(h1, m2, 1e-8)
            backs.append((back_ln1, back_att, back_add1, back_ln2, back_m1, back_m2, back_add2))
        y, back_final = self.layer_norm(h, "final_ln")
        if self.kind == "vit":
            pooled, back_pool = y[:, 0], None
        else:
            pooled, back_pool = self.mean_tokens(y)
        logits, back_head = self.linear(pooled, w["head/kernel"], w["head/bias"])

        r = back_head(seed)
        if back_pool is None:
            full = np.zeros_like(y)
            full[:, 0] = r
            r = full
        else:
            r = back_pool(r)
        r = back_final(r)
        for back_ln1, back_att, back_add1, back_ln2, back_m1, back_m2, back_add2 in backs[::-1]:
            r_h1, r_m2 = back_add2(r)
            r_h1 = r_h1 + back_ln2(back_m1(back_m2(r_m2)))
            r_h, r_a = back_add1(r_h1)
            r = r_h + back_ln1(back_att(r_a))
        r, _ = back_pos(r)
        if self.kind == "vit":
            r = back_patch(r[:, 1:])
            n, hh, ww, c = x.shape
            p = self.patch
            r = r.reshape(n, hh // p, ww // p, p, p, c).transpose(0, 1, 3, 2, 4, 5)
            r = r.reshape(x.shape)
        return logits, r


def _erf(x: np.ndarray) -> np.ndarray:
    from math import erf

    return np.vectorize(erf)(x)


def conservation_table(
    weights: dict[str, np.ndarray], kind: str, x: np.ndarray, target: int
) -> list[tuple[str, float, float, int]]:
    """Per rule: worst relative |ΣR_in − ΣR_out| / |ΣR_out|, the mean ΣR_in / ΣR_out, the
    number of applications.

    Measured with every bias-like term zeroed (biases, LayerNorm β, positions, class token),
    where the paper's rules conserve except the softmax's (its Taylor expansion at x has a
    bias term, −Σ_j p_j x_j ΣR).
    """
    zeroed = {
        k: (np.zeros_like(v) if k.endswith(("/bias", "/beta", "/position", "/class_token")) else v)
        for k, v in weights.items()
    }
    model = NumpyAttnLRP(zeroed, kind)
    seed = np.zeros((x.shape[0], weights["head/kernel"].shape[1]))
    logits, r = model.relevance(x, seed)
    seed[:, target] = logits[:, target]
    logits, r = model.relevance(x, seed)
    rows: dict[str, list[tuple[float, float]]] = {}
    for rule, total_in, total_out in model.record:
        rows.setdefault(rule, []).append(
            (abs(total_in - total_out) / max(abs(total_out), 1e-300), total_in / total_out)
        )
    table = [
        (rule, max(d for d, _ in v), float(np.mean([q for _, q in v])), len(v))
        for rule, v in rows.items()
    ]
    ratio = float(np.sum(r) / np.sum(seed))
    table.append(("whole model", abs(ratio - 1.0), ratio, 1))
    return table


# ----------------------------------------------------------------------------- main
def generate() -> dict[str, np.ndarray]:
    """Everything the npz holds (and the printed checks)."""
    models = keras_models()
    inputs = reference_inputs(models)
    out: dict[str, np.ndarray] = {}
    for kind, model in models.items():
        weights = weights_of(model)
        x = inputs[kind]
        keras_logits = np.asarray(model(x), np.float64)
        xin = twin_input(kind, weights, x)
        logits, maps = unit_relevance(Twin(weights, kind, "attnlrp"), xin)
        cp_logits, cp_maps = unit_relevance(Twin(weights, kind, "cp"), xin)
        gap = float(np.max(np.abs(logits - keras_logits)))
        assert gap < 1e-5, f"{kind}: twin logits differ from Keras by {gap}"
        assert np.allclose(cp_logits, logits, atol=1e-12)
        # the numpy re-implementation must give the same maps
        numpy_model = NumpyAttnLRP(weights, kind)
        worst = 0.0
        for c in range(logits.shape[1]):
            seed = np.zeros_like(logits)
            seed[:, c] = 1.0
            np_logits, r = numpy_model.relevance(xin, seed)
            worst = max(worst, float(np.max(np.abs(r - maps[:, c])) / np.max(np.abs(maps[:, c]))))
        assert worst < 1e-8, f"{kind}: numpy AttnLRP differs from LXT by {worst:.2e} (relative)"
        print(
            f"{kind}: |twin − Keras| logits ≤ {gap:.2e}; numpy vs LXT maps ≤ {worst:.2e} "
            "(relative to the map's max)"
        )
        target = logits.argmax(1)
        sums = [
            float(np.sum(maps[i, t]) * logits[i, t] / logits[i, t] ** 2)
            for i, t in enumerate(target)
        ]
        print(
            f"{kind}: ΣR_input / z_target, real weights (biases, positions absorb a share): "
            + ", ".join(f"{s:.3f}" for s in sums)
        )
        print(
            f"{kind}: conservation per rule, biases/β/positions/class token zeroed, "
            "seed z_target of sample 0's top class, all samples:"
        )
        for rule, worst_rel, mean_rel, count in conservation_table(
            weights, kind, xin, int(target[0])
        ):
            print(
                f"{kind}:   {rule:<18s} max |ΣR_in/ΣR_out − 1| {worst_rel:.2e}, "
                f"mean ΣR_in/ΣR_out {mean_rel:.4f} ({count} applications)"
            )
        for name, value in weights.items():
            out[f"{kind}/weight/{name}"] = value.astype(np.float32)
        out[f"{kind}/input"] = x
        out[f"{kind}/logits"] = logits
        out[f"{kind}/attnlrp_unit"] = maps
        out[f"{kind}/cp_unit"] = cp_maps
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="recompute and compare with the committed npz; write nothing",
    )
    args = parser.parse_args(argv)
    refs = generate()
    if args.check:
        old = np.load(OUT)
        for key, value in refs.items():
            np.testing.assert_allclose(old[key], value, rtol=1e-6, atol=1e-9, err_msg=key)
        print("the committed references reproduce")
        return
    np.savez_compressed(OUT, **refs)
    print(f"wrote {OUT} ({os.path.getsize(OUT) / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
