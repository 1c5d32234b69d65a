"""`python -m fastbp demo` (the README's main job) and `python -m fastbp bench`."""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastbp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train the seed-004 network and compare its speed with numpy and torch")
    demo.add_argument("--epochs", type=int, default=400)
    demo.add_argument("--batch-size", type=int, default=8)
    demo.add_argument("--lr", type=float, default=0.1)
    demo.add_argument("--print-every", type=int, default=20)
    sub.add_parser("bench", add_help=False,
                   help="time fastbp against numpy and torch side by side (see `fastbp bench -h`)")
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        from .bench import main as bench_main

        return bench_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "demo":
        from .demo import run

        run(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, print_every=args.print_every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
