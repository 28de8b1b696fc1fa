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


# ----------------------------------------------------------------------------------------
# The misfires of issue 18: factors named only when real, NaNs traced to their operation
# ----------------------------------------------------------------------------------------
def test_softmax_over_the_wrong_axis_is_named_not_a_constant_factor():
    def axis_0(z, y):
        e = np.exp(z - z.max(axis=0))
        p = e / e.sum(axis=0)
        return -np.sum(y * np.log(p)) / len(z), (p - y) / len(z)
    report = ex.check_softmax_cross_entropy(axis_0, verbose=False).report()
    assert "times" not in report and "constant factor" not in report
    assert "normalises over axis 0" in report and "axis=1" in report


def test_a_scalar_off_by_an_arbitrary_factor_names_no_factor():
    def off(z, y):
        loss, dz = solutions.softmax_cross_entropy(z, y)
        return loss * 1.276, dz
    [line] = wrong_lines(ex.check_softmax_cross_entropy(off, verbose=False))
    assert line.startswith("loss") and "times" not in line and "expected 1.28117" in line


def test_a_factor_is_named_only_when_every_entry_has_it():
    expected = np.arange(1.0, 7.0).reshape(2, 3)
    assert "times 3" in checkers.value_hint(3 * expected, expected)
    almost = 3 * expected
    almost[0, 0] += 0.5                          # a least-squares fit would still say about 3
    assert checkers.value_hint(almost, expected) == ""


def test_conv_bias_averaged_instead_of_summed_is_a_mean_over_the_patches():
    def mean_bias(dout, x, w, stride, pads):
        dx, dw, _ = solutions.conv2d_backward(dout, x, w, stride, pads)
        return dx, dw, dout.reshape(-1, w.shape[-1]).mean(axis=0)
    [line] = wrong_lines(ex.check_conv2d_backward(mean_bias, verbose=False))
    assert line.startswith("db")
    assert "times 0.0333 = 1/30 = 1/(N*OH*OW): a mean where a sum belongs" in line


def test_adam_without_epsilon_is_a_division_by_zero_not_an_overflow():
    def no_eps(p, g, m, v, t, learning_rate, beta_1, beta_2, epsilon):
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g * g
        lr_t = learning_rate * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
        with np.errstate(invalid="ignore"):
            return p - lr_t * m / np.sqrt(v), m, v
    [line] = wrong_lines(ex.check_adam_step(no_eps, verbose=False))
    assert line.startswith("p") and "2 of 12 entries are NaN or inf, only in row 0 (of 3)" in line
    assert "np.sqrt(v)" in line and "a denominator that is 0 (is an epsilon missing?)" in line
    assert "lr_t * m / np.sqrt(v) gives invalid value encountered in divide" in line   # found despite errstate
    assert "np.exp" not in line


def test_overflow_in_exp_is_traced_to_its_line_with_or_without_errstate():
    def unshifted(z, y):
        e = np.exp(z)
        p = e / e.sum(axis=1, keepdims=True)
        return -np.mean(np.sum(y * np.log(p), axis=1)), (p - y) / len(z)
    with np.errstate(all="ignore"):
        report = ex.check_softmax_cross_entropy(unshifted, verbose=False).report()
    assert "line" in report and "e = np.exp(z)" in report and "overflow encountered in exp" in report
    assert "np.exp of a large number is inf" in report


def test_a_nan_from_log_of_zero_is_not_blamed_on_exp():
    def log_zero(z, y):
        loss, dz = solutions.softmax_cross_entropy(z, y)
        with np.errstate(divide="ignore"):
            dz = dz * np.log(np.zeros_like(z))[0, 0]
        return loss, dz
    [line] = wrong_lines(ex.check_softmax_cross_entropy(log_zero, verbose=False))
    assert "log(0)" in line and "np.exp" not in line and "making dz NaN or inf" in line


# ----------------------------------------------------------------------------------------
# Where a wrong answer is wrong: the count, the axes, the picture
# ----------------------------------------------------------------------------------------
def relu_at_zero(dout, x):
    return dout * (x >= 0)


def test_report_counts_the_wrong_entries_and_names_their_rows_and_columns():
    [line] = wrong_lines(checkers.check_relu_backward(relu_at_zero, verbose=False))
    assert "3 of 20 entries are wrong, only in rows 1, 2 (of 4); columns 0, 2 (of 5)" in line


def test_wrong_channel_is_named():
    def one_channel(dout, x, gamma, eps):
        dx, dgamma, dbeta = solutions.batchnorm_backward(dout, x, gamma, eps)
        dx[..., 1] *= 2
        return dx, dgamma, dbeta
    [line] = wrong_lines(checkers.check_batchnorm_backward(one_channel, verbose=False))
    assert line.startswith("dx") and "only in column 1 (of 3)" in line


def test_plot_shows_expected_received_and_the_wrong_entries():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    result = checkers.check_relu_backward(relu_at_zero, verbose=False)
    assert result.wrong["name"] == "dx" and int(result.wrong["bad"].sum()) == 3
    fig = result.plot()
    titles = [ax.get_title() for ax in fig.axes]
    assert "dx expected" in titles and "dx received" in titles and "wrong: 3 of 20 entries" in titles
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), result.wrong["expected"])
    plt.close(fig)
    bundle = result._repr_mimebundle_()
    assert bundle["image/png"].startswith(b"\x89PNG") and "relu_backward: wrong" in bundle["text/plain"]
    correct = checkers.check_relu_backward(solutions.relu_backward, verbose=False)
    assert correct.plot() is None and "image/png" not in correct._repr_mimebundle_()


def test_plot_of_images_tiles_samples_and_channels():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def no_divide(dout, x, pool_size):
        return np.repeat(np.repeat(dout, pool_size[0], axis=1), pool_size[1], axis=2)
    fig = checkers.check_avgpool_backward(no_divide, verbose=False).plot()
    assert fig.axes[0].images[0].get_array().shape == (2 * 4, 3 * 6)     # (N*H, C*W)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["c0", "c1", "c2"]
    plt.close(fig)


# ----------------------------------------------------------------------------------------
# Hints
# ----------------------------------------------------------------------------------------
def test_every_exercise_has_three_hint_levels(capsys):
    from tinycnn.exercises.hints import HINTS, hint
    assert set(HINTS) == set(checkers.CHECKERS)
    for name in checkers.CHECKERS:
        texts = [hint(name, level) for level in (1, 2, 3)]
        assert len(set(texts)) == 3 and all(f"{name}, hint {k} of 3" in t for k, t in enumerate(texts, 1))
    assert capsys.readouterr().out.count("hint 3 of 3") == len(checkers.CHECKERS)
    assert "xhat * mean(dxhat * xhat)" in hint("batchnorm_backward", level=3, verbose=False)


def test_hint_refuses_an_unknown_exercise_or_level():
    from tinycnn.exercises.hints import hint
    with pytest.raises(ValueError, match="no exercise named 'batchnorm'.*batchnorm_backward"):
        hint("batchnorm")
    for level in (0, 4, "2", True):
        with pytest.raises(ValueError, match="level must be 1 .* 2 .* or 3"):
            hint("relu_backward", level=level)


# ----------------------------------------------------------------------------------------
# The new exercises' typical mistakes
# ----------------------------------------------------------------------------------------
def test_relu_gate_at_zero():
    [line] = wrong_lines(checkers.check_relu_backward(relu_at_zero, verbose=False))
    assert "Wrong exactly where x == 0" in line and "x > 0, not x >= 0" in line


def test_relu_gated_by_dout_or_missing_dout():
    [line] = wrong_lines(checkers.check_relu_backward(lambda dout, x: np.maximum(dout, 0), verbose=False))
    assert "relu(dout)" in line
    [line] = wrong_lines(checkers.check_relu_backward(lambda dout, x: (x > 0) * 1.0, verbose=False))
    assert "gate (x > 0) alone: multiply it by dout" in line


def test_dropout_mask_not_scaled():
    [line] = wrong_lines(checkers.check_dropout_backward(lambda dout, keep, rate: dout * keep, verbose=False))
    assert "times 0.6 = 1 - rate: the mask is not scaled by 1/(1 - rate)" in line


def test_dropout_rate_taken_as_keep_probability_and_dropped_units_leaking():
    [line] = wrong_lines(checkers.check_dropout_backward(lambda dout, keep, rate: dout * keep / rate,
                                                         verbose=False))
    assert "1.5 = (1 - rate)/rate" in line and "fraction DROPPED" in line
    [line] = wrong_lines(checkers.check_dropout_backward(lambda dout, keep, rate: dout / (1 - rate),
                                                         verbose=False))
    assert "dropped units received gradient" in line


def batchnorm_mistake(kind):
    def bn(dout, x, gamma, eps):
        axes = tuple(range(x.ndim - 1))
        inv_std = 1 / np.sqrt(x.var(axis=axes) + eps)
        xhat = (x - x.mean(axis=axes)) * inv_std
        d = dout * gamma
        dx = {"constants": d * inv_std,
              "no mean term": inv_std * (d - xhat * (d * xhat).mean(axis=axes)),
              "no variance term": inv_std * (d - d.mean(axis=axes)),
              "over N": inv_std * (d - d.mean(axis=0) - xhat * (d * xhat).mean(axis=0))}[kind]
        return dx, (dout * xhat).sum(axis=axes), dout.sum(axis=axes)
    return bn


@pytest.mark.parametrize("kind, words", [
    ("constants", "the mean and the variance are treated as constants"),
    ("no mean term", "The mean's term is missing"),
    ("no variance term", "The variance's term is missing"),
])
def test_batchnorm_forgotten_mean_and_variance_terms(kind, words):
    result = checkers.check_batchnorm_backward(batchnorm_mistake(kind), verbose=False)
    [line] = wrong_lines(result)
    assert "case 1 of 2" in result.case and line.startswith("dx") and words in line
    assert "dgamma ok" in result.report() and "dbeta  ok" in result.report()


def test_batchnorm_statistics_over_the_batch_axis_only_for_images():
    result = checkers.check_batchnorm_backward(batchnorm_mistake("over N"), verbose=False)
    assert "case 2 of 2" in result.case                                  # (N, C) hides it
    [line] = wrong_lines(result)
    assert "axis 0 only" in line and "(0, 1, 2)" in line


def test_batchnorm_dgamma_averaged():
    def mean_dgamma(dout, x, gamma, eps):
        dx, dgamma, dbeta = solutions.batchnorm_backward(dout, x, gamma, eps)
        return dx, dgamma / len(x), dbeta
    [line] = wrong_lines(checkers.check_batchnorm_backward(mean_dgamma, verbose=False))
    assert line.startswith("dgamma") and "1/6 = 1/m: a mean where a sum belongs" in line


def test_conv_forward_patch_order():
    def c_first(x, w, b, stride, pads):
        KH, KW, C, F = w.shape
        out = im2col(x, KH, KW, stride, pads) @ w.transpose(2, 0, 1, 3).reshape(-1, F) + b
        return out.reshape(solutions.conv2d_forward(x, w, b, stride, pads).shape)
    [line] = wrong_lines(checkers.check_conv2d_forward(c_first, verbose=False))
    assert "flattened in (c, kh, kw) order" in line and "w.reshape(KH*KW*C, F)" in line
    assert "vs direct sum" in line


def test_conv_forward_kernel_reshaped_with_the_filters_first_and_bias_forgotten():
    def filters_first(x, w, b, stride, pads):
        KH, KW, C, F = w.shape
        out = im2col(x, KH, KW, stride, pads) @ w.reshape(F, -1).T + b
        return out.reshape(solutions.conv2d_forward(x, w, b, stride, pads).shape)
    [line] = wrong_lines(checkers.check_conv2d_forward(filters_first, verbose=False))
    assert "w.reshape(F, -1).T" in line
    no_bias = checkers.check_conv2d_forward(lambda x, w, b, s, p: solutions.conv2d_forward(x, w, 0 * b, s, p),
                                            verbose=False)
    assert "without the bias" in no_bias.report()


def test_conv_forward_channels_first_output():
    def nchw(x, w, b, stride, pads):
        return solutions.conv2d_forward(x, w, b, stride, pads).transpose(0, 3, 1, 2)
    [line] = wrong_lines(checkers.check_conv2d_forward(nchw, verbose=False))
    assert "expected (2, 3, 5, 4), received (2, 4, 3, 5)" in line and "channels-first" in line


def test_avgpool_not_divided_by_the_window():
    def no_divide(dout, x, pool_size):
        return np.repeat(np.repeat(dout, pool_size[0], axis=1), pool_size[1], axis=2)
    [line] = wrong_lines(checkers.check_avgpool_backward(no_divide, verbose=False))
    assert "times 4 = PH*PW (the window's cells): a missing 1/(PH*PW)?" in line


def test_avgpool_gradient_to_one_cell_per_window():
    def one_cell(dout, x, pool_size):
        dx = np.zeros_like(x)
        dx[:, ::pool_size[0], ::pool_size[1], :] = dout / (pool_size[0] * pool_size[1])
        return dx
    [line] = wrong_lines(checkers.check_avgpool_backward(one_cell, verbose=False))
    assert "108 of the 144 cells received no gradient" in line


def test_global_avgpool_not_divided_or_divided_by_the_batch_too():
    def no_divide(dout, x):
        return np.broadcast_to(dout[:, None, None, :], x.shape).copy()
    [line] = wrong_lines(checkers.check_global_avgpool_backward(no_divide, verbose=False))
    assert "times 20 = H*W (the pixels per channel): a missing 1/(H*W)?" in line

    def over_batch(dout, x):
        return solutions.global_avgpool_backward(dout, x) / len(x)
    [line] = wrong_lines(checkers.check_global_avgpool_backward(over_batch, verbose=False))
    assert "times 0.5 = 1/2 = 1/N" in line


def test_two_layer_missing_relu_mask():
    def no_mask(x, y, w1, b1, w2, b2):
        h = np.maximum(x @ w1 + b1, 0)
        loss, dz = solutions.softmax_cross_entropy(h @ w2 + b2, y)
        dh = dz @ w2.T
        return loss, x.T @ dh, dh.sum(axis=0), h.T @ dz, dz.sum(axis=0)
    result = checkers.check_two_layer_backward(no_mask, verbose=False)
    assert [line.split()[0] for line in wrong_lines(result)] == ["dw1", "db1"]
    assert all("without the ReLU's gate" in line for line in wrong_lines(result))
    assert "dw2    ok" in result.report() and "loss   ok" in result.report()


def test_two_layer_missing_one_over_n_and_swapped_product():
    def no_mean(x, y, w1, b1, w2, b2):
        loss, *grads = solutions.two_layer_backward(x, y, w1, b1, w2, b2)
        return (loss, *(len(x) * g for g in grads))
    lines = wrong_lines(checkers.check_two_layer_backward(no_mean, verbose=False))
    assert len(lines) == 4 and all("times 4 = N (the batch size): a missing 1/N?" in line for line in lines)

    def swapped(x, y, w1, b1, w2, b2):
        h = np.maximum(x @ w1 + b1, 0)
        loss, dz = solutions.softmax_cross_entropy(h @ w2 + b2, y)
        dh = (dz @ w2.T) * (h > 0)
        return loss, x.T @ dh, dh.sum(axis=0), dz.T @ h, dz.sum(axis=0)
    [line] = wrong_lines(checkers.check_two_layer_backward(swapped, verbose=False))
    assert line.startswith("dw2") and "expected (6, 3), received (3, 6)" in line


def test_softmax_jvp_missing_off_diagonal_term():
    [line] = wrong_lines(checkers.check_softmax_jvp(lambda p, v: p * v, verbose=False))
    assert "the term -p (p . v) is missing" in line


def test_softmax_jvp_dot_product_over_the_batch_or_broadcast_wrong():
    def batch_sum(p, v):
        return p * (v - np.sum(p * v, axis=0, keepdims=True))
    [line] = wrong_lines(checkers.check_softmax_jvp(batch_sum, verbose=False))
    assert "summed over axis 0" in line

    def no_keepdims(p, v):
        return p * (v - np.sum(p * v, axis=1))
    result = checkers.check_softmax_jvp(no_keepdims, verbose=False)
    assert result.status == "error" and "could not be broadcast" in result.report()   # (4, 3) - (4,)
    square = checkers.check_softmax_jvp(lambda p, v: no_keepdims(p, v) if p.shape[0] == p.shape[1]
                                        else solutions.softmax_jvp(p, v), verbose=False)
    assert "case 2 of 2" in square.case and "keepdims=True" in square.report()
