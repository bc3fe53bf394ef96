"""Clean, certified and L2-PGD accuracy of an sc-fac model on a data set.

The certified radius of each input is ``margin / (sqrt(2) L)`` (dissertation Eq. 7.5) with ``L`` the network's
Lipschitz constant (the model's own bound: 1 by construction for sc-fac models, the input mix's largest singular
value for one adapted to another ``in_chans``; ``--lipschitz`` overrides it). The script also reports
a power-iteration estimate of the Jacobian's spectral norm at a few inputs as a sanity check (must be <= L).

    python scripts/certify.py sc-fac-wrn10-1-cifar10-small --pretrained --data cifar10-holdout
    python scripts/certify.py sc-fac-wrn10 --kwargs widen_factor=1 --data cifar10 --limit 200
"""

from __future__ import annotations

import argparse
import json

import torch


def _parse_kwargs(items: list) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def load_data(name: str, seed: int, holdout: int):
    """Images in [0, 1] and labels: ``cifar10`` (all 10,000 test images), ``cifar10-holdout`` (the held-out split
    of the training recipes, ``zoo.datasets.split``) or ``mnist``."""
    from zoo import datasets

    if name not in ("mnist", "cifar10", "cifar10-holdout"):
        raise SystemExit(f"unknown data set {name!r}: expected cifar10, cifar10-holdout or mnist")
    x, y = datasets.mnist() if name == "mnist" else datasets.cifar10()
    x = x.float() / 255.0
    if name == "cifar10-holdout":
        _, idx = datasets.split(len(y), holdout, seed=seed)
        return x[idx], y[idx]
    return x, y


def main() -> None:
    import zoo
    from zoo_scfac.robust import EPS_CIFAR, evaluate_robustness, jacobian_spectral_norm, model_lipschitz_bound

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", help="registry name, e.g. sc-fac-wrn10-1-cifar10-small")
    p.add_argument("--pretrained", action="store_true")
    p.add_argument("--checkpoint", default=None, help="a .safetensors file to load")
    p.add_argument("--kwargs", nargs="*", default=[], help="builder overrides KEY=VALUE (JSON values)")
    p.add_argument("--data", default="cifar10-holdout")
    p.add_argument("--seed", type=int, default=0, help="split seed of cifar10-holdout")
    p.add_argument("--holdout", type=int, default=2000)
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N samples only")
    p.add_argument("--eps", type=float, default=EPS_CIFAR)
    p.add_argument("--lipschitz", type=float, default=None, help="default: the model's own bound")
    p.add_argument("--pgd-steps", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print one JSON line")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = zoo.create(args.model, pretrained=args.pretrained, checkpoint_path=args.checkpoint,
                       **_parse_kwargs(args.kwargs)).eval()
    x, y = load_data(args.data, args.seed, args.holdout)
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    res = evaluate_robustness(model, x, y, eps=args.eps, lipschitz=args.lipschitz, pgd_steps=args.pgd_steps,
                              batch_size=args.batch_size)
    res["jacobian_norm_max"] = max(jacobian_spectral_norm(model, x[i:i + 1], iters=20) for i in range(3))
    lipschitz = args.lipschitz if args.lipschitz is not None else model_lipschitz_bound(model)
    res.update(model=args.model, data=args.data, lipschitz=lipschitz, pgd_steps=args.pgd_steps)
    if args.json:
        print(json.dumps(res))
        return
    print(f"{args.model} on {args.data} (n = {res['n']}), eps = {args.eps:.4f} (L2), Lipschitz {lipschitz}")
    print(f"  clean accuracy       {res['clean_acc']:6.2f} %")
    print(f"  certified accuracy   {res['certified_acc']:6.2f} %")
    print(f"  PGD accuracy         {res['pgd_acc']:6.2f} %   ({args.pgd_steps} L2-PGD steps, margin loss)")
    print(f"  mean certified radius {res['mean_certified_radius']:.4f}; max Jacobian norm at 3 inputs "
          f"{res['jacobian_norm_max']:.4f}")


if __name__ == "__main__":
    main()
