"""The exercise checkers: correct answers pass, skeletons say "not written", typical mistakes are caught.

Every mistake below is one a student makes; each test asserts the verdict, the output named
as wrong and the detail the report gives (shape, error size, the hint).
"""
import numpy as np
import pytest

from tinycnn import exercises as ex
from tinycnn.exercises import checkers, skeletons, solutions
from tinycnn.kernels.numpy_ops import col2im, im2col


def wrong_lines(result):
    return [line for line in result.lines if "WRONG" in line]


# ----------------------------------------------------------------------------------------
# Correct answers and skeletons
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ex.EXERCISES)
def test_reference_solution_passes(name, capsys):
    result = checkers.CHECKERS[name](getattr(solutions, name))
    assert result.passed and bool(result) and result.status == "correct"
    out = capsys.readouterr().out
    assert out.startswith(f"{name}: correct")
    for ref, num in result.errors.values():
        assert ref <= checkers.TOLERANCE
        assert num is None or num <= checkers.NUMERIC_TOLERANCE


@pytest.mark.parametrize("name", ex.EXERCISES)
def test_skeleton_reports_not_written(name):
    result = checkers.CHECKERS[name](getattr(skeletons, name), verbose=False)
    assert result.status == "not written" and not result
    assert "NotImplementedError" in result.report()


def test_gradient_outputs_are_checked_against_numerical_gradients():
    result = ex.check_dense_backward(solutions.dense_backward, verbose=False)
    assert set(result.errors) == {"dx", "dw", "db"}
    assert all(0 < num < 1e-7 for _, num in result.errors.values())   # a real finite difference
    result = ex.check_maxpool_backward(solutions.maxpool_backward, verbose=False)
    assert result.errors["dx"][1] is not None


def test_check_all_runs_every_checker(capsys):
    results = ex.check_all(solutions)
    assert list(results) == list(ex.EXERCISES) and all(results.values())
    assert capsys.readouterr().out.count(": correct") == len(ex.EXERCISES)


def test_check_all_reports_missing_functions():
    class Partial:
        dense_backward = staticmethod(solutions.dense_backward)
    results = ex.check_all(Partial, verbose=False)
    assert results["dense_backward"].passed
    assert results["adam_step"].status == "not written"


def test_answers_that_are_not_float64_pass():
    def float32_dense(dout, x, w):
        dx, dw, db = solutions.dense_backward(dout.astype(np.float32), x.astype(np.float32),
                                              w.astype(np.float32))
        return dx.astype(np.float64), dw.astype(np.float64), db.astype(np.float64)
    result = ex.check_dense_backward(float32_dense, verbose=False)
    assert result.status == "wrong"                 # float32 is ~1e-7 off: reported, not hidden
    assert all(ref < 1e-3 for ref, _ in result.errors.values())


# ----------------------------------------------------------------------------------------
# Dense: transposed weights, a missing sum over the batch
# ----------------------------------------------------------------------------------------
def test_dense_transposed_weight_gradient_is_a_shape_error():
    def transposed(dout, x, w):
        return dout @ w.T, dout.T @ x, dout.sum(axis=0)      # dw is (M, D), not (D, M)
    result = ex.check_dense_backward(transposed, verbose=False)
    assert result.status == "wrong"
    [line] = wrong_lines(result)
    assert line.startswith("dw") and "expected (5, 3), received (3, 5)" in line
    assert "transpose" in line
    assert "dx     ok" in result.report() and "db     ok" in result.report()


def test_dense_transposed_weight_in_square_case_is_a_value_error():
    def transposed(dout, x, w):
        if w.shape[0] == w.shape[1]:
            return dout @ w, x.T @ dout, dout.sum(axis=0)     # w instead of w.T: same shape, wrong values
        return solutions.dense_backward(dout, x, w)
    result = ex.check_dense_backward(transposed, verbose=False)
    assert result.status == "wrong" and "case 2 of 2" in result.case
    [line] = wrong_lines(result)
    assert line.startswith("dx") and "shape (3, 4) is right" in line
    assert result.errors["dx"][0] > 1e-2 and result.errors["dx"][1] > 1e-2
    assert "max relative error" in line and "Worst entry dx[" in line


def test_dense_wrong_operand_order_raises_and_is_reported():
    def wrong_order(dout, x, w):
        return dout @ w, x.T @ dout, dout.sum(axis=0)         # (4, 3) @ (5, 3): shapes do not fit
    result = ex.check_dense_backward(wrong_order, verbose=False)
    assert result.status == "error"
    report = result.report()
    assert "ValueError" in report and "line" in report and "dout @ w" in report
    assert "dout (4, 3), x (4, 5), w (5, 3)" in report


def test_dense_bias_gradient_keeping_the_batch_axis():
    def no_sum(dout, x, w):
        return dout @ w.T, x.T @ dout, dout
    [line] = wrong_lines(ex.check_dense_backward(no_sum, verbose=False))
    assert line.startswith("db") and "expected (3,), received (4, 3)" in line and "sum over the batch" in line


def test_dense_missing_return_value():
    def two(dout, x, w):
        return dout @ w.T, x.T @ dout
    result = ex.check_dense_backward(two, verbose=False)
    assert result.status == "wrong"
    assert "expected a tuple of 3 values (dx, dw, db); received 2 values" in result.report()


# ----------------------------------------------------------------------------------------
# Softmax + cross-entropy: the missing 1/N, overflow
# ----------------------------------------------------------------------------------------
def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_softmax_missing_one_over_n_in_gradient():
    def no_mean(z, y):
        p = softmax(z)
        return -np.mean(np.sum(y * np.log(p), axis=1)), p - y
    result = ex.check_softmax_cross_entropy(no_mean, verbose=False)
    assert result.status == "wrong"
    [line] = wrong_lines(result)
    assert line.startswith("dz") and "times 4 = N" in line and "missing 1/N" in line
    ref_err, num_err = result.errors["dz"]
    assert ref_err == pytest.approx(3 / 5, rel=1e-6)       # |4a - a| / |4a + a|
    assert num_err == pytest.approx(3 / 5, rel=1e-4)
    assert "loss   ok" in result.report()


def test_softmax_summed_loss_is_caught():
    def summed(z, y):
        p = softmax(z)
        return -np.sum(y * np.log(p)), (p - y) / len(z)
    [line] = wrong_lines(ex.check_softmax_cross_entropy(summed, verbose=False))
    assert line.startswith("loss") and "missing 1/N" in line


def test_softmax_without_max_shift_overflows_on_large_logits():
    def unshifted(z, y):
        with np.errstate(over="ignore", invalid="ignore"):
            e = np.exp(z)
            p = e / e.sum(axis=1, keepdims=True)
            return -np.mean(np.sum(y * np.log(p), axis=1)), (p - y) / len(z)
    result = ex.check_softmax_cross_entropy(unshifted, verbose=False)
    assert result.status == "wrong" and "case 2 of 2" in result.case
    assert "NaN or inf" in result.report()


def test_softmax_loss_per_sample_is_caught():
    def per_sample(z, y):
        p = softmax(z)
        return -np.sum(y * np.log(p), axis=1), (p - y) / len(z)
    result = ex.check_softmax_cross_entropy(per_sample, verbose=False)
    assert result.status == "wrong" and "expected one number" in result.report() and "(4,)" in result.report()


# ----------------------------------------------------------------------------------------
# Conv2D: the weight reshaped in the wrong order, a reshape instead of col2im, stride ignored
# ----------------------------------------------------------------------------------------
def test_conv_weight_reshaped_in_the_wrong_order():
    def wrong_layout(dout, x, w, stride, pads):
        KH, KW, C, F = w.shape
        cols = im2col(x, KH, KW, stride, pads)
        dz = dout.reshape(-1, F)
        dcols = dz @ w.reshape(F, -1)                  # not the transpose of w.reshape(-1, F)
        return col2im(dcols, x.shape, KH, KW, stride, pads), (cols.T @ dz).reshape(w.shape), dz.sum(axis=0)
    result = ex.check_conv2d_backward(wrong_layout, verbose=False)
    assert result.status == "wrong"
    [line] = wrong_lines(result)
    assert line.startswith("dx") and "shape (2, 5, 6, 3) is right" in line
    assert result.errors["dx"][0] > 0.1 and result.errors["dw"][0] < 1e-12


def test_conv_weight_gradient_not_reshaped():
    def flat_dw(dout, x, w, stride, pads):
        dx, dw, db = solutions.conv2d_backward(dout, x, w, stride, pads)
        return dx, dw.reshape(-1, w.shape[-1]), db
    [line] = wrong_lines(ex.check_conv2d_backward(flat_dw, verbose=False))
    assert "expected (3, 2, 3, 4), received (18, 4)" in line and "reshape it to (3, 2, 3, 4)" in line


def test_conv_ignoring_stride_and_padding_fails_the_second_case():
    def stride_one(dout, x, w, stride, pads):
        return solutions.conv2d_backward(dout, x, w, (1, 1), (0, 0, 0, 0))
    result = ex.check_conv2d_backward(stride_one, verbose=False)
    assert result.status == "error" and "case 2 of 2" in result.case
    assert "inside" in result.report()                  # the failing call is named


def test_conv_overlap_not_summed_is_caught():
    def no_overlap(dout, x, w, stride, pads):
        dx, dw, db = solutions.conv2d_backward(dout, x, w, stride, pads)
        ones = col2im(np.ones((dout.shape[0] * dout.shape[1] * dout.shape[2], w[..., 0].size)),
                      x.shape, w.shape[0], w.shape[1], stride, pads)
        return dx / np.maximum(ones, 1), dw, db          # averaging overlaps instead of adding them
    result = ex.check_conv2d_backward(no_overlap, verbose=False)
    assert [line[:2] for line in wrong_lines(result)] == ["dx"]


# ----------------------------------------------------------------------------------------
# Max-pooling: wrong routing
# ----------------------------------------------------------------------------------------
def test_maxpool_gradient_to_every_cell():
    def everywhere(dout, x, pool_size):
        PH, PW = pool_size
        return np.repeat(np.repeat(dout, PH, axis=1), PW, axis=2)
    result = ex.check_maxpool_backward(everywhere, verbose=False)
    [line] = wrong_lines(result)
    assert "108 cell(s) that are not their window's max received gradient" in line   # 144 cells - 36 maxima
    assert "0 of the 36 maxima received none" in line
    assert result.errors["dx"][0] == pytest.approx(1.0)


def test_maxpool_gradient_to_top_left_cell():
    def top_left(dout, x, pool_size):
        PH, PW = pool_size
        dx = np.zeros_like(x)
        dx[:, ::PH, ::PW, :] = dout
        return dx
    [line] = wrong_lines(ex.check_maxpool_backward(top_left, verbose=False))
    assert "Routing:" in line and "maxima received none" in line


def test_maxpool_argmax_unravelled_with_the_wrong_width():
    def swapped(dout, x, pool_size):                       # divmod by PH instead of PW
        N, H, W, C = x.shape
        PH, PW = pool_size
        dx = np.zeros_like(x)
        for n, i, j, c in np.ndindex(dout.shape):
            window = x[n, i * PH:(i + 1) * PH, j * PW:(j + 1) * PW, c]
            a, b = divmod(int(window.argmax()), PH)
            if a < PH and b < PW:
                dx[n, i * PH + a, j * PW + b, c] += dout[n, i, j, c]
        return dx
    result = ex.check_maxpool_backward(swapped, verbose=False)
    assert result.status == "wrong" and "case 2 of 2" in result.case   # square windows hide it
    assert "Routing:" in result.report()


def test_maxpool_argmin_instead_of_argmax():
    def argmin(dout, x, pool_size):
        return solutions.maxpool_backward(dout, -x, pool_size)
    result = ex.check_maxpool_backward(argmin, verbose=False)
    assert result.status == "wrong" and "36 of the 36 maxima received none" in result.report()


def test_input_modified_in_place_is_reported():
    def in_place(dout, x, pool_size):
        dout *= 1.0
        dout[0, 0, 0, 0] = 5.0
        return solutions.maxpool_backward(dout, x, pool_size)
    result = ex.check_maxpool_backward(in_place, verbose=False)
    assert result.status == "wrong" and "dout was changed in place" in result.report()


# ----------------------------------------------------------------------------------------
# Adam
# ----------------------------------------------------------------------------------------
def test_adam_without_bias_correction():
    def uncorrected(p, g, m, v, t, learning_rate, beta_1, beta_2, epsilon):
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g * g
        return p - learning_rate * m / (np.sqrt(v) + epsilon), m, v
    result = ex.check_adam_step(uncorrected, verbose=False)
    assert result.status == "wrong" and "t=1" in result.case
    [line] = wrong_lines(result)
    assert line.startswith("p") and "bias correction is missing" in line and "3.162" in line


def test_adam_textbook_form_is_accepted():
    def textbook(p, g, m, v, t, learning_rate, beta_1, beta_2, epsilon):
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g * g
        m_hat, v_hat = m / (1 - beta_1 ** t), v / (1 - beta_2 ** t)
        return p - learning_rate * m_hat / (np.sqrt(v_hat) + epsilon), m, v
    result = ex.check_adam_step(textbook, verbose=False)
    assert result.passed and "textbook form" in result.report()


def test_adam_abs_gradient_instead_of_its_square():
    def abs_v(p, g, m, v, t, learning_rate, beta_1, beta_2, epsilon):
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * np.abs(g)
        lr_t = learning_rate * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
        return p - lr_t * m / (np.sqrt(v) + epsilon), m, v
    result = ex.check_adam_step(abs_v, verbose=False)
    assert result.status == "wrong"
    assert [line[0] for line in wrong_lines(result)] == ["p", "v"]
    assert "m      ok" in result.report()


def test_adam_ascent_instead_of_descent():
    def ascent(p, g, m, v, t, *hyper):
        new_p, m, v = solutions.adam_step(p, g, m, v, t, *hyper)
        return 2 * p - new_p, m, v
    [line] = wrong_lines(ex.check_adam_step(ascent, verbose=False))
    assert line.startswith("p") and "sign flipped" in line


def test_adam_wrong_step_in_later_steps_is_caught():
    def stale(p, g, m, v, t, *hyper):
        return solutions.adam_step(p, g, m, v, 1, *hyper)          # t stuck at 1
    result = ex.check_adam_step(stale, verbose=False)
    assert result.status == "wrong" and "t=2" in result.case
