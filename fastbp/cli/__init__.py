"""fastbp's command line (`python -m fastbp` or `fastbp`): `demo` (the README's main job), `train` (a classifier
from a CSV file) and `bench` (fastbp against numpy and torch)."""
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
    train = sub.add_parser("train", help="train a classifier on a CSV file (features..., label; no header) "
                                         "and write its history, plots and checkpoint to a folder")
    train.add_argument("--csv", required=True, help="training data")
    train.add_argument("--test-csv", help="test data (default: --test-fraction of --csv held out)")
    train.add_argument("--test-fraction", type=float, default=0.3)
    train.add_argument("--hidden", default="5", help="hidden layer widths, comma-separated (default 5)")
    train.add_argument("--activation", default="sigmoid", choices=("sigmoid", "relu", "tanh"))
    train.add_argument("--loss", default="mse", choices=("mse", "cross_entropy"))
    train.add_argument("--optimizer", default="sgd", choices=("sgd", "adam"))
    train.add_argument("--lr", type=float, default=0.1)
    train.add_argument("--momentum", type=float, default=0.0)
    train.add_argument("--epochs", type=int, default=400)
    train.add_argument("--batch-size", type=int, default=8)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    train.add_argument("--out", default="fastbp-run", help="output folder (default fastbp-run)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--no-plots", action="store_true", help="skip the PNG plots (no matplotlib needed)")
    train.add_argument("--distributed", action="store_true",
                       help="under mpiexec: data-parallel over every rank, --batch-size per rank (the mpi extra)")
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
    elif args.command == "train":
        from .train import train_from_csv

        try:
            hidden = tuple(int(w) for w in args.hidden.split(",") if w.strip())
        except ValueError:
            parser.error(f"--hidden must be comma-separated integers, got {args.hidden!r}")
        try:
            train_from_csv(args.csv, args.out, test_csv=args.test_csv, test_fraction=args.test_fraction,
                           hidden=hidden, activation=args.activation, loss=args.loss,
                           optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
                           epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                           dtype=args.dtype, progress=not args.no_progress, plots=not args.no_plots,
                           distributed=args.distributed)
        except (ValueError, TypeError, OSError, FloatingPointError, MemoryError, ImportError) as exc:
            # FloatingPointError: training diverged (NonFiniteLossError); OSError:
            # a --csv that is a folder or unreadable; one line, no traceback
            print(f"fastbp train: error: {type(exc).__name__ + ': ' if isinstance(exc, (OSError, MemoryError)) else ''}"
                  f"{exc}", file=sys.stderr)
            return 2
    return 0

