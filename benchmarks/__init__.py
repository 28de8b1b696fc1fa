"""tinycnn's benchmark suite: tinycnn (Numba and NumPy backends; the seed model also through the
functional API) against Keras and PyTorch.

    python -m benchmarks            # the default run (about 15-20 minutes on 2 cores)
    python -m benchmarks --quick    # a 1-2 minute check
    python -m benchmarks --full     # 5 epochs, for the tutorial's accuracy

Two workloads: the seed tutorial's model on MNIST, and the course model (benchmarks/course.py,
a BatchNorm CNN on CIFAR-shaped random data). Every framework runs each in its own subprocess
(benchmarks/worker_*.py), interleaved over rounds, with the same thread count and the same data; run.py collects their JSON, adds the machine
and writes benchmarks/results/{results.json, results.md, *.png}. The benchmark is not part of
the test suite (tests/test_benchmarks_smoke.py runs it at tiny sizes).
"""
