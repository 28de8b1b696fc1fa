"""The command line: `python -m tinycnn train` trains the seed tutorial's CNN on the bundled MNIST.

    python -m tinycnn train [--epochs 5] [--batch-size 128] [--seed 0] [--out DIR] [--backend numba|numpy]
"""
import argparse
import json
import os
import sys
import time


def train(args):
    import matplotlib
    matplotlib.use("Agg")                       # the CLI writes PNGs; it never opens a window
    import numpy as np

    import tinycnn
    from tinycnn import plot, seed

    if args.backend:
        tinycnn.set_backend(args.backend)
    tinycnn.set_random_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    print(f"tinycnn {tinycnn.__version__}, backend {tinycnn.get_backend()}, seed {args.seed}")

    (x_train, y_train), (x_test, y_test) = seed.prepare_mnist()
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
        x_test, y_test = x_test[:max(args.limit // 6, 1)], y_test[:max(args.limit // 6, 1)]
    print(f"Training data shape: {x_train.shape}; test data shape: {x_test.shape}")
    model = seed.build_residual_model() if args.model == "residual" else seed.build_model()
    model.summary()
    optimizer = "adam"
    if args.model == "residual":      # BatchNorm's moving statistics settle as the rate decays to 0
        steps = -(-len(x_train) // args.batch_size) * args.epochs
        optimizer = tinycnn.optimizers.Adam(tinycnn.optimizers.schedules.CosineDecay(0.002, steps))
    model.compile(loss="categorical_crossentropy", optimizer=optimizer, metrics=["accuracy"])

    start = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        validation_data=(x_test, y_test), verbose=args.verbose)
    seconds = time.perf_counter() - start
    test_loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"Test Loss: {test_loss:.4f}")
    print(f"Test Accuracy: {test_accuracy:.4f}")
    compiled = ", Numba's compilation included" if tinycnn.get_backend() == "numba" else ""
    print(f"Training time: {seconds:.1f} s ({seconds / max(args.epochs, 1):.1f} s/epoch, "
          f"validation included{compiled})")

    weights = os.path.join(args.out, f"{args.model}_model.weights.npz")
    model.save_weights(weights)
    plot.history(history).savefig(os.path.join(args.out, "history.png"), dpi=100)
    predictions = np.argmax(model.predict(x_test[:5], verbose=0), axis=1)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"test_loss": test_loss, "test_accuracy": test_accuracy, "epochs": args.epochs,
                   "batch_size": args.batch_size, "seed": args.seed, "backend": tinycnn.get_backend(),
                   "train_seconds": seconds, "history": history.history,
                   "first_5_predictions": predictions.tolist()}, f, indent=2)
    print(f"Predictions for the first 5 test images: {predictions.tolist()} "
          f"(actual {np.argmax(y_test[:5], axis=1).tolist()})")
    print(f"Saved {weights}, history.png and results.json in {args.out}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m tinycnn",
        description="tinycnn: a from-scratch NumPy CNN framework for teaching backpropagation.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("train", help="train the seed tutorial's CNN on the bundled MNIST and report test accuracy",
                       description="Train the Keras tutorial's CNN (225,034 parameters) on the MNIST copy "
                                   "shipped with tinycnn, print the summary, the progress and the test "
                                   "loss and accuracy, and save the weights, the history plot and a "
                                   "results.json in --out.")
    p.add_argument("--epochs", type=int, default=5, help="passes over the 60,000 training images (default 5)")
    p.add_argument("--batch-size", type=int, default=128, help="images per step (default 128)")
    p.add_argument("--seed", type=int, default=0, help="random seed for weights, dropout and shuffling (default 0)")
    p.add_argument("--out", default="tinycnn-run", help="folder for the weights, plot and results (default ./tinycnn-run)")
    p.add_argument("--backend", choices=["numba", "numpy"], default=None,
                   help="kernels to use (default: $TINYCNN_BACKEND, else numba)")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="a quick look: train on the first N images, test on the first N/6")
    p.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1, help="progress display, as Keras (default 1)")
    p.add_argument("--model", choices=["seed", "residual"], default="seed",
                   help="seed: the tutorial's CNN (default); residual: a functional residual CNN with BatchNorm")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.epochs < 1 or args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--epochs, --batch-size and --limit must be positive")
    return train(args)


if __name__ == "__main__":
    sys.exit(main())
