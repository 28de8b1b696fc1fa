"""How a stack of layers is run: the reference plan, the chain rule as two loops.

A model never calls its layers' forward and backward itself: it asks the backend for a plan
(tinycnn.backend.build_plan) and calls the plan. Every plan has the same three methods:

    forward(x, training)   the stack's output; with training=True, what backward needs is kept
    backward(dout)         dL/d(stack output) -> dL/d(stack input), filling every layer's grads
    warm_up(x)             prepare to run on inputs like x (the fast plan compiles its kernels)

This one, the reference, is the definition: each layer's own methods, in order and in
reverse. A list needs no graph: each layer feeds exactly the next one, so the reverse of the
list is the reverse of the computation. The Numba backend's plan computes the same numbers
faster (tinycnn/kernels/numba_ops/plan.py), and tests/test_plans.py holds it to this one.
"""


class ReferencePlan:
    """Every layer's forward in order, every layer's backward in reverse."""

    compiles = False            # nothing to compile: warm_up has nothing to do

    def __init__(self, layers):
        self.layers = list(layers)

    def forward(self, x, training=False):
        for layer in self.layers:
            x = layer.forward(x, training=training)     # each keeps its cache when training
        return x

    def backward(self, dout):
        for layer in reversed(self.layers):
            dout = layer.backward(dout)                 # fills layer.grads, returns dL/d(its input)
        return dout

    def warm_up(self, x):
        """Nothing to prepare."""
