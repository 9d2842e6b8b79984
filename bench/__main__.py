"""`python -m bench [hidiffusion|cfgpp|iclight|upscale|edit ...] [--json] [--quick]`: run the named benchmarks (all
when none is named) and print a table of their numbers, or one JSON object {feature: {name: value}} with --json."""
import argparse
import importlib
import json
import sys

import torch

FEATURES = ("hidiffusion", "cfgpp", "iclight", "upscale", "edit")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("features", nargs="*", metavar="FEATURE",
                        help=f"one or more of {', '.join(FEATURES)} (default: all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--quick", action="store_true", help="smaller models and fewer repeats (smoke run)")
    args = parser.parse_args(argv)
    unknown = [f for f in args.features if f not in FEATURES]
    if unknown:
        parser.error(f"unknown feature(s) {', '.join(unknown)}; choose from {', '.join(FEATURES)}")
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 16)))

    from support.kdiffusion_import import import_k_diffusion
    import_k_diffusion()

    results = {}
    for feature in args.features or FEATURES:
        module = importlib.import_module(f"bench.{feature}")
        results[feature] = module.run(quick=args.quick)

    if args.json:
        json.dump(results if len(results) > 1 else next(iter(results.values())), sys.stdout, indent=2)
        print()
        return
    for feature, numbers in results.items():
        print(f"\n{feature}")
        width = max(len(k) for k in numbers) if numbers else 0
        for key, value in numbers.items():
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            print(f"  {key:<{width}}  {shown}")


if __name__ == "__main__":
    main()
