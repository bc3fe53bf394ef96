"""Per-layer fidelity of BQN analytic inference (issue 18): the propagated mean and variance of every unit against
Monte-Carlo over the posterior, on the bundled bqn-mlp-mnist / bqn-cnn-mnist and held-out MNIST images.

For every layer output (pre-activations z after a weighted layer, sign units h, pooled units u, the logits):

* ``var AI/MC``: sum over units and images of the analytic variance / the same sum of MC variances (and the median
  of the per-unit ratio over units whose MC variance exceeds 1e-3);
* ``|t|``: the analytic mean's error in MC standard errors, (mu_AI - mu_MC) / sqrt(var_MC / S), median / 99th
  percentile / max over units (under no error: 0.67 / 2.58 / about sqrt(2 ln n) for n units);
* one step from the MC input (what the layer alone loses, given its input's true marginals):
  weighted layers ``MF var/MC``: Var from the CLT formula with independent inputs, op(E h^2, Var w) +
  op(Var h, (E w)^2), over the MC variance; ``full var/MC``: the exact decomposition op(E h^2, Var w) +
  Var_h[op(h, E w)] (keeps the covariance of the inputs; 1 up to MC error); pooling: sum of the window's
  variances / k^4 over the MC variance; sign units: ``CLT |t|``, the mean of sign(z) for z Gaussian with z's MC
  mean and variance, in MC standard errors of h's mean.

MC draws one weight configuration per sample, shared by the images of the batch (each image's law is Q's).
Then the predictive NLL / error on the first ``--nll-images`` held-out images: the chapter's AI bound, AI normalised
over the classes, and MC with ``--nll-samples`` samples (the predictive without the mean-field or the CLT).
Writes STEM.{json,md} (default benchmarks/bqn_moments).

    OMP_NUM_THREADS=1 python scripts/bench_bqn_moments.py [--images 100 --samples 400 --tie-images 20
        --nll-images 2000 --nll-samples 100 --threads 1 --seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

import zoo
from zoo_bqn.contraction import dft_sum, gaussian_quantize
from zoo_bqn.data import mnist_split
from zoo_bqn.dist import Categorical, Gaussian, mean_var
from zoo_bqn.layers import AvgPoolDFT, BayesConv2d, BayesLinear, BayesWeighted, Flatten, QuantAct, realise
from zoo_bqn.metrics import error, nll
from zoo_bqn.network import BQNClassifier

ROOT = Path(__file__).resolve().parents[1]
VAR_FLOOR = 1e-3  # units with a smaller MC variance are left out of the median ratio (ratios of noise)


class Moments:
    """Running sums over samples of x - x_0 and (x - x_0)^2 (x_0 the first sample, so that a unit constant over the
    samples has variance exactly 0), float64, of one tensor shape."""

    def __init__(self) -> None:
        self.count = 0
        self.shift = self.s1 = self.s2 = torch.zeros(())

    def add(self, x: torch.Tensor) -> None:
        x = x.double()
        if self.count == 0:
            self.shift = x
        d = x - self.shift
        self.s1, self.s2 = self.s1 + d, self.s2 + d * d
        self.count += 1

    def mean_var(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Sample mean and unbiased variance."""
        n = self.count
        d = self.s1 / n
        return self.shift + d, ((self.s2 - n * d * d) / (n - 1)).clamp_min(0.0)


def layers_of(model: BQNClassifier) -> List[Tuple[str, nn.Module]]:
    """The model's layers in order after the stem, named as in the model (Flatten kept: it reshapes)."""
    named = [(f"features.{i}", m) for i, m in enumerate(model.features)]
    named += [(f"pre_logits.{i}", m) for i, m in enumerate(model.pre_logits)]
    return named + [("head", model.head)]


def label(name: str, layer: nn.Module) -> str:
    kind = {BayesLinear: "linear z", BayesConv2d: "conv z", QuantAct: "sign h", AvgPoolDFT: "pool u"}
    text = kind.get(type(layer), type(layer).__name__)
    return f"{name} ({'logits' if name == 'head' else text})"


def weight_moments(layer: BayesWeighted, dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
    """E[w] and Var[w] of a weighted layer (weight shape)."""
    mean, second = (t.to(dtype) for t in layer.weight_moments())
    return mean, (second - mean * mean).clamp_min(0.0)


def op(layer: nn.Module, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The layer's bilinear map for real weights ``w`` (linear or convolution)."""
    return layer._op(h, w) if isinstance(layer, BayesConv2d) else torch.nn.functional.linear(h, w)


def analytic(model: BQNClassifier, x: torch.Tensor) -> Dict[str, Tuple[torch.Tensor, torch.Tensor]]:
    """(mean, var) of every layer's output under the zoo's analytic propagation."""
    out, h = {}, model.stem(x)
    for name, layer in layers_of(model):
        h = layer(h)
        if not isinstance(layer, Flatten):
            out[name] = tuple(t.double() for t in mean_var(h))
    return out


def monte_carlo(model: BQNClassifier, x: torch.Tensor, samples: int, seed: int
                ) -> Tuple[Dict[str, Moments], Dict[str, Moments]]:
    """Per-layer output moments over ``samples`` posterior draws, and per weighted layer the moments of
    op(h, E[w]) (its input pushed through the mean weights), for the one-step decomposition."""
    g = torch.Generator().manual_seed(seed)
    outs: Dict[str, Moments] = {}
    mean_w: Dict[str, Moments] = {}
    w_means = {name: weight_moments(layer, x.dtype)[0] for name, layer in layers_of(model)
               if isinstance(layer, BayesWeighted)}
    for _ in range(samples):
        weights = realise(model, "sample", g)
        h = model.stem(x)
        for name, layer in layers_of(model):
            if name in w_means:
                mean_w.setdefault(name, Moments()).add(op(layer, h, w_means[name]))
            h = layer.qnn(h, weights)
            if not isinstance(layer, Flatten):
                outs.setdefault(name, Moments()).add(h)
    return outs, mean_w


def quantiles(t: torch.Tensor) -> Dict[str, float]:
    """Median, 99th percentile, max, count and fraction above 3 of the values of ``t``."""
    t = t.flatten().double().sort().values
    n = t.numel()
    return {"median": float(t[(n - 1) // 2]), "p99": float(t[int(0.99 * (n - 1))]), "max": float(t[-1]), "n": n,
            "frac_gt_3": float((t > 3).double().mean())}


def one_step(name: str, layer: nn.Module, prev: Optional[Tuple[torch.Tensor, torch.Tensor]],
             mean_w: Dict[str, Moments], mc: Tuple[torch.Tensor, torch.Tensor], samples: int) -> Dict[str, float]:
    """What the layer alone loses given its input's MC marginals (see the module docstring)."""
    mc_mean, mc_var = mc
    if prev is None:
        return {}
    in_mean, in_var = prev
    if isinstance(layer, BayesWeighted):
        w_mean, w_var = weight_moments(layer, torch.float64)
        base = op(layer, in_var + in_mean * in_mean, w_var)
        mf = base + op(layer, in_var, w_mean * w_mean)
        full = base + mean_w[name].mean_var()[1]
        return {"mf_var_ratio": float(mf.sum() / mc_var.sum()), "full_var_ratio": float(full.sum() / mc_var.sum())}
    if isinstance(layer, AvgPoolDFT):
        k2 = layer.kernel_size ** 2
        mf = torch.nn.functional.avg_pool2d(in_var, layer.kernel_size) / k2
        return {"mf_var_ratio": float(mf.sum() / mc_var.sum())}
    if isinstance(layer, QuantAct):
        pmf = gaussian_quantize(Gaussian(in_mean, in_var), layer.levels, layer.scale)
        clt_mean = (pmf * layer.levels.to(pmf.dtype)).sum(-1)
        keep = mc_var > 0
        t = (clt_mean - mc_mean)[keep].abs() / (mc_var[keep] / samples).sqrt()
        return {"clt_t": quantiles(t)}
    return {}


def compare(model: BQNClassifier, x: torch.Tensor, samples: int, seed: int) -> List[Dict]:
    """One row per layer output: analytic vs MC moments and the one-step decomposition."""
    ai = analytic(model, x)
    outs, mean_w = monte_carlo(model, x, samples, seed)
    stem = model.stem(x).double()
    rows, prev = [], (stem, torch.zeros_like(stem))
    for name, layer in layers_of(model):
        if isinstance(layer, Flatten):
            prev = tuple(t.reshape(t.shape[0], -1) for t in prev)
            continue
        mc_mean, mc_var = outs[name].mean_var()
        ai_mean, ai_var = ai[name]
        keep = mc_var > 0
        t = (ai_mean - mc_mean)[keep].abs() / (mc_var[keep] / samples).sqrt()
        big = mc_var > VAR_FLOOR
        row = {"layer": label(name, layer), "units_per_image": int(mc_mean[0].numel()),
               "var_ratio_sum": float(ai_var.sum() / mc_var.sum()),
               "var_ratio_median": float((ai_var[big] / mc_var[big]).median()) if big.any() else float("nan"),
               "mean_t": quantiles(t), "mean_abs_error": float((ai_mean - mc_mean).abs().mean()),
               "mean_abs_error_max": float((ai_mean - mc_mean).abs().max()),
               "mc_deterministic_units": int((~keep).sum()),
               "ai_mean_error_on_deterministic": float((ai_mean - mc_mean)[~keep].abs().max()) if (~keep).any()
               else 0.0}
        row.update(one_step(name, layer, prev, mean_w, (mc_mean, mc_var), samples))
        rows.append(row)
        prev = (mc_mean, mc_var)
    return rows


def uncertain_weights(model: BQNClassifier, threshold: float = 0.1) -> Dict[str, Dict[str, float]]:
    """Per weighted layer: how many of an output unit's weights have Var[w] > ``threshold`` (min / median / max over
    the output units) out of its fan-in: few uncertain terms make the CLT's Gaussian poor."""
    out = {}
    for name, layer in layers_of(model):
        if isinstance(layer, BayesWeighted):
            count = (weight_moments(layer, torch.float64)[1] > threshold).flatten(1).sum(1).double()
            out[name] = {"min": float(count.min()), "median": float(count.median()), "max": float(count.max()),
                         "fan_in": layer.num_weights() // count.numel()}
    return out


def tie_free_exact(p_w: torch.Tensor, p_h: torch.Tensor, chunk: int = 32) -> Tuple[torch.Tensor, torch.Tensor]:
    """P(z_j >= 0) for z_j = sum_i w_ji h_i, independent +-1 weights (P(w = +1) = p_w (out, in)) and units
    (P(h = +1) = p_h (B, in)), by the DFT sum of the terms, per image and ``chunk`` output units (bounded memory);
    and the support of z."""
    levels = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    rows, support = [], levels
    for b in range(p_h.shape[0]):
        parts = []
        for j in range(0, p_w.shape[0], chunk):
            pw = p_w[j: j + chunk]
            p_term = pw * p_h[b] + (1 - pw) * (1 - p_h[b])  # P(w_ji h_i = +1), (chunk, in)
            pmf, support = dft_sum(torch.stack([1 - p_term, p_term], -1), levels)
            parts.append((pmf * (support >= 0)).sum(-1))
        rows.append(torch.cat(parts))
    return torch.stack(rows), support


def lattice_ties(model: BQNClassifier, x: torch.Tensor) -> Dict[str, Dict[str, float]]:
    """For every binary-weight hidden linear layer (not the head: its z is not quantized) fed binary sign units (then
    z is a lattice sum and the tie z = 0 goes to +1 in the QNN): |P(z >= 0) exact under independent inputs - the
    zoo's Phi(mu / sigma)| and the same for the continuity-corrected Phi((mu + step / 2) / sigma), mean / max over
    units and images. The exact pmf of z is the
    DFT sum (:func:`zoo_bqn.contraction.dft_sum`, tested against enumeration) of the terms w_i h_i = +-1."""
    out, h = {}, model.stem(x)
    binary = [-1.0, 1.0]
    for name, layer in layers_of(model):
        if (isinstance(layer, BayesLinear) and name != "head" and isinstance(h, Categorical)
                and h.levels.tolist() == binary and list(layer.level_values) == binary):
            z = layer(h)
            exact, support = tie_free_exact(layer.probs()[..., 1], h.probs[..., 1])
            sd = z.var.sqrt()
            half_step = 1.0 if (support == 0).any() else 0.0  # a tie exists when the term count is even
            err = (exact - torch.special.ndtr(z.mean / sd)).abs()
            err_cc = (exact - torch.special.ndtr((z.mean + half_step) / sd)).abs()
            out[name] = {"zoo_mean": float(err.mean()), "zoo_max": float(err.max()),
                         "corrected_mean": float(err_cc.mean()), "corrected_max": float(err_cc.max())}
        h = layer(h)
    return out


def predictive(model: BQNClassifier, x: torch.Tensor, y: torch.Tensor, samples: int, seed: int,
               batch: int = 250) -> Dict[str, Dict[str, float]]:
    """NLL and error of the AI bound, AI-norm and MC-``samples`` on (x, y), in batches."""
    out: Dict[str, Dict[str, float]] = {}
    g = torch.Generator().manual_seed(seed)
    for mode in ("ai", "ai-norm", "mc"):
        logp = torch.cat([model(x[i: i + batch], mode=mode, samples=samples, generator=g)
                          for i in range(0, x.shape[0], batch)])
        key = f"mc-{samples}" if mode == "mc" else mode
        out[key] = {"nll": nll(logp, y), "error": error(logp, y)}
    return out


def markdown(result: Dict) -> str:
    lines = ["# BQN analytic inference vs Monte-Carlo, layer by layer (scripts/bench_bqn_moments.py)", "",
             f"`{result['command']}`", "",
             f"{result['device']}; {result['images']} held-out MNIST images (seed-0 split), S = {result['samples']} "
             f"posterior samples (one weight draw per sample, shared by the batch), seed {result['seed']}; "
             f"{result['seconds']:.0f} s.", "",
             "var AI/MC: sum of analytic variances / sum of MC variances (median per-unit ratio over units with MC "
             f"variance > {VAR_FLOOR:g}). |t|: |mu_AI - mu_MC| / sqrt(var_MC / S), median / p99 / max (no error: "
             "0.67 / 2.58 / ~sqrt(2 ln n)), and the fraction above 3 (no error: 0.0027); |dmu|: |mu_AI - mu_MC| "
             "itself (mean / max over units). One step from the MC "
             "input: MF = the layer's mean-field (independent inputs) variance over MC's, full = the exact "
             "decomposition keeping the input covariance (1 up to MC error); CLT |t| = sign(z) of a Gaussian with z's "
             "MC moments against h's MC mean.", ""]
    for name, rows in result["models"].items():
        lines += [f"## {name}", "",
                  "| layer | units/img | var AI/MC (sum) | (median) | mean |t| med / p99 / max | >3 | "
                  "|dmu| mean / max | "
                  "one step: MF var/MC | full var/MC | CLT |t| med / max |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            t = r["mean_t"]
            clt = r.get("clt_t")
            lines.append(
                f"| {r['layer']} | {r['units_per_image']} | {r['var_ratio_sum']:.3f} | {r['var_ratio_median']:.3f} | "
                f"{t['median']:.2f} / {t['p99']:.2f} / {t['max']:.1f} | {t['frac_gt_3']:.4f} | "
                f"{r['mean_abs_error']:.4f} / {r['mean_abs_error_max']:.3f} | "
                f"{r.get('mf_var_ratio', float('nan')):.3f} | {r.get('full_var_ratio', float('nan')):.3f} | "
                + (f"{clt['median']:.2f} / {clt['max']:.1f} |" if clt else "- |"))
        lines.append("")
    lines += ["## Weights with Var[w] > 0.1 per output unit (min / median / max of the fan-in)", ""]
    for name, layers in result["uncertain_weights"].items():
        lines.append(f"- {name}: " + "; ".join(f"{k} {v['min']:.0f} / {v['median']:.0f} / {v['max']:.0f} of "
                                                  f"{v['fan_in']}" for k, v in layers.items()))
    lines += ["", "## Ties of lattice sums: |P(h = +1) - exact| (binary weights on sign units, exact by DFT; "
              f"the first {result['tie_images']} images)", "",
              "| model | layer | zoo mean / max | continuity-corrected mean / max |", "|---|---|---|---|"]
    for name, layers in result["lattice_ties"].items():
        for k, v in layers.items():
            lines.append(f"| {name} | {k} | {v['zoo_mean']:.4f} / {v['zoo_max']:.4f} | "
                         f"{v['corrected_mean']:.4f} / {v['corrected_max']:.4f} |")
    lines += ["", f"## Predictive on the first {result['nll_images']} held-out images", "",
              "| model | method | NLL | error |", "|---|---|---|---|"]
    for name, methods in result["predictive"].items():
        for method, m in methods.items():
            lines.append(f"| {name} | {method} | {m['nll']:.4f} | {m['error']:.4f} |")
    lines.append("")
    return "\n".join(lines).replace("| nan |", "| - |").replace("| nan |", "| - |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--samples", type=int, default=400)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tie-images", type=int, default=20, help="images for the exact lattice-tie check (slow)")
    ap.add_argument("--nll-images", type=int, default=2000)
    ap.add_argument("--nll-samples", type=int, default=100)
    ap.add_argument("--models", nargs="+", default=["bqn-mlp-mnist", "bqn-cnn-mnist"])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "bqn_moments"), help="writes STEM.json, STEM.md")
    args = ap.parse_args()
    if args.samples < 2 or args.images < 1:
        raise ValueError(f"need --samples >= 2 and --images >= 1, got {args.samples} and {args.images}")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    _, _, x_test, y_test = mnist_split(8000, seed=0)
    x = x_test[: args.images].double()
    result: Dict = {"command": "OMP_NUM_THREADS=1 python scripts/bench_bqn_moments.py " + " ".join(sys.argv[1:]),
                    "device": f"CPU, {args.threads} thread(s), float64, load average {os.getloadavg()[0]:.2f} at start",
                    "images": args.images, "samples": args.samples, "seed": args.seed, "models": {},
                    "nll_images": args.nll_images, "tie_images": args.tie_images, "predictive": {},
                    "uncertain_weights": {}, "lattice_ties": {}}
    with torch.no_grad():
        for name in args.models:
            model = zoo.create(name, pretrained=True).double().eval()
            rows = compare(model, x, args.samples, args.seed)
            result["models"][name] = rows
            for r in rows:
                print(name, r["layer"], f"var AI/MC {r['var_ratio_sum']:.3f} (median {r['var_ratio_median']:.3f})",
                      f"|t| med {r['mean_t']['median']:.2f} max {r['mean_t']['max']:.1f}",
                      f"MF1 {r.get('mf_var_ratio', float('nan')):.3f}",
                      f"full1 {r.get('full_var_ratio', float('nan')):.3f}",
                      flush=True)
            result["uncertain_weights"][name] = uncertain_weights(model)
            result["lattice_ties"][name] = lattice_ties(model, x[: args.tie_images])
            result["predictive"][name] = predictive(model.float(), x_test[: args.nll_images],
                                                    y_test[: args.nll_images], args.nll_samples, args.seed)
            print(name, result["predictive"][name], flush=True)
    result["seconds"] = time.perf_counter() - start
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(markdown(result))
    print(f"wrote {out}.json and {out}.md ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
