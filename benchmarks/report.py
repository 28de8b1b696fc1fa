"""Turn a results dict (run.py) into markdown tables and PNG plots."""
import os
import statistics

ORDER = ("tinycnn-numba", "tinycnn-functional", "tinycnn-numpy", "keras", "pytorch")
LABELS = {"tinycnn-numba": "tinycnn (Numba)", "tinycnn-functional": "tinycnn (Numba, functional API)",
          "tinycnn-numpy": "tinycnn (NumPy)",
          "keras": "Keras (TF CPU)", "pytorch": "PyTorch CPU"}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUND_METRICS = ("ms_per_step", "fit_ms_per_step", "s_per_epoch", "predict_s")
FAST_WITHIN = 0.25          # a Keras round is "fast" if its s/epoch is within 25% of its fastest round


def _fmt(s, digits=1, scale=1.0):
    """'median [min-max]' of a summary dict."""
    if not s:
        return "—"
    m, lo, hi = (s[k] * scale for k in ("median", "min", "max"))
    if s.get("n", 1) == 1:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} [{lo:.{digits}f}–{hi:.{digits}f}]"


def _ratio(results, key, fw, metric):
    r = results.get("ratios", {}).get(key, {}).get(fw, {}).get(metric)
    return "—" if r is None else f"{r:.2f}×"


def _per(a, b):
    return a / b if a is not None and b is not None and b > 0 else None


def round_ratios(runs, fw="tinycnn-numba", ref="keras", within=FAST_WITHIN):
    """fw's time ÷ ref's, round by round (runs matched by their "round" field), and the medians
    over all rounds and over ref's fast rounds: ref's s/epoch within `within` of its fastest."""
    mine = {r["round"]: r for r in runs.get(fw, []) if "round" in r}
    theirs = {r["round"]: r for r in runs.get(ref, []) if "round" in r}
    common_rounds = sorted(set(mine) & set(theirs))
    if not common_rounds:
        return None
    fastest = min(theirs[r]["s_per_epoch"] for r in common_rounds)
    rows = []
    for r in common_rounds:
        a, b = mine[r], theirs[r]
        row = {"round": r, f"{ref}_s_per_epoch": b["s_per_epoch"],
               f"{ref}_fast": b["s_per_epoch"] <= (1 + within) * fastest}
        row.update({m: _per(a.get(m), b.get(m)) for m in ROUND_METRICS})
        rows.append(row)

    def medians(chosen):
        return {m: statistics.median(v) if (v := [x[m] for x in chosen if x[m] is not None]) else None
                for m in ROUND_METRICS}
    fast = [x for x in rows if x[f"{ref}_fast"]]
    return {"framework": fw, "reference": ref, "fast_within": within, f"fastest_{ref}_s_per_epoch": fastest,
            "rounds": rows, "fast_rounds": [x["round"] for x in fast],
            "median_all_rounds": medians(rows), "median_fast_rounds": medians(fast)}


COURSE_METRICS = ("ms_per_step", "fit_ms_per_step")


def course_round_ratios(runs, fw="tinycnn-numba", refs=("keras", "pytorch"), metrics=COURSE_METRICS):
    """fw's time ÷ each reference's in the same round, and their medians over the rounds."""
    mine = {r["round"]: r for r in runs.get(fw, []) if "round" in r}
    out = {}
    for ref in refs:
        theirs = {r["round"]: r for r in runs.get(ref, []) if "round" in r}
        rows = [dict({"round": r}, **{m: _per(mine[r].get(m), theirs[r].get(m)) for m in metrics})
                for r in sorted(set(mine) & set(theirs))]
        if rows:
            out[ref] = {"rounds": rows, "median": {
                m: statistics.median(v) if (v := [x[m] for x in rows if x[m] is not None]) else None
                for m in metrics}}
    return out or None


FUNCTIONAL_LIMIT = 1.05     # the functional seed's step must be within 5% of the Sequential's


def functional_lines(results):
    """The seed model built with tinycnn.Model(inputs, outputs) ÷ the Sequential, round by round."""
    v = (results.get("functional_ratios") or {}).get("tinycnn-numba")
    if not v:
        return []
    med = v["median"]["ms_per_step"]
    verdict = "within" if med is not None and med <= FUNCTIONAL_LIMIT else "NOT within"
    return [f"{LABELS['tinycnn-functional']} ÷ {LABELS['tinycnn-numba']} (the same seed model as "
            f"tinycnn.Input → the layers called in a chain → tinycnn.Model, in a process of its own in the same "
            f"rounds), ms/step: " + ", ".join(f"round {x['round']}: {_x(x['ms_per_step'])}" for x in v["rounds"])
            + f"; median {_x(med)} ({verdict} the {FUNCTIONAL_LIMIT:.2f}× required); fit ms/step "
            f"{_x(v['median']['fit_ms_per_step'])}, s/epoch {_x(v['median']['s_per_epoch'])}."]


def course_table(results):
    course = results.get("course") or {}
    fws = [f for f in ORDER if f in course]
    if not fws:
        return []
    c = course[fws[0]]
    s1, s2 = c["fit_steps"]
    lines = [f"The course model (benchmarks/course.py: Conv2D(32)-BN-ReLU, Conv2D(32)-BN-ReLU, MaxPool, "
             f"Conv2D(64)-BN-ReLU, GlobalAveragePooling2D, Dense(10); 3×3 'same' convolutions), random "
             f"{'×'.join(map(str, c['image_shape']))} images in [0, 1], 10 classes, batch {c['batch_size']}, "
             f"{c['ms_per_step']['n']} round(s), run in the same rounds as the seed workload. Median [min–max] "
             f"over rounds; fit ms/step is the marginal step of a fit of {s2} batches against one of {s1}.", "",
             "| framework | train ms/step | fit ms/step (marginal) | peak RSS, MB | ms/step ÷ Keras | "
             "ms/step ÷ PyTorch | fit ms/step ÷ Keras | fit ms/step ÷ PyTorch |", "|---|---|---|---|---|---|---|---|"]
    rat = results.get("course_ratios", {})

    def r(key, fw, m):
        v = rat.get(key, {}).get(fw, {}).get(m)
        return "—" if v is None else f"{v:.2f}×"
    for fw in fws:
        s = course[fw]
        lines.append(f"| {LABELS[fw]} | {_fmt(s['ms_per_step'])} | {_fmt(s.get('fit_ms_per_step'))} | "
                     f"{_fmt(s['peak_rss_mb'], 0)} | {r('vs_keras', fw, 'ms_per_step')} | "
                     f"{r('vs_pytorch', fw, 'ms_per_step')} | {r('vs_keras', fw, 'fit_ms_per_step')} | "
                     f"{r('vs_pytorch', fw, 'fit_ms_per_step')} |")
    return lines


def course_round_lines(results):
    lines = []
    for ref, v in (results.get("course_round_ratios") or {}).items():
        lines += ["", f"{LABELS['tinycnn-numba']} ÷ {LABELS[ref]}, round by round (ms/step; fit ms/step): "
                  + ", ".join(f"round {x['round']}: {_x(x['ms_per_step'])}; {_x(x['fit_ms_per_step'])}"
                              for x in v["rounds"])
                  + f". Median of the rounds: {_x(v['median']['ms_per_step'])}; {_x(v['median']['fit_ms_per_step'])}."]
    return lines


def course_layer_lines(results):
    """Where the time of tinycnn's course step goes: each layer's own forward and backward."""
    lay = (results.get("course_layers") or {}).get("backends") or {}
    fws = [f for f in ("tinycnn-numba", "tinycnn-numpy") if f in lay]
    if not fws:
        return []
    first = lay[fws[0]]
    lines = ["", f"Where tinycnn's course step goes, batch {first['batch_size']}: each layer's own "
                 f"forward(training=True) and backward (dL/dx included), one after another as the reference plan "
                 f"runs them.", "",
             "| layer | output | " + " | ".join(f"{LABELS[f]} fwd ms | bwd ms" for f in fws) + " |",
             "|---|---|" + "---|---|" * len(fws)]
    for i, row in enumerate(first["layers"]):
        cells = [f"{lay[f]['layers'][i]['forward_ms']:.2f} | {lay[f]['layers'][i]['backward_ms']:.2f}" for f in fws]
        lines.append(f"| {row['name']} ({row['type']}) | {'×'.join(map(str, row['out_shape']))} | "
                     + " | ".join(cells) + " |")
    lines.append("| Adam update | | " + " | ".join(f"— | {lay[f]['adam_ms']:.2f}" for f in fws) + " |")
    for f in fws:
        r = lay[f]
        by_type = {}
        for x in r["layers"]:
            by_type[x["type"]] = by_type.get(x["type"], 0) + x["forward_ms"] + x["backward_ms"]
        total = sum(by_type.values()) + r["adam_ms"]
        lines += ["", f"{LABELS[f]}: layers + Adam sum to {total:.1f} ms (" + ", ".join(
            f"{k} {v:.1f} ms, {100 * v / total:.0f}%" for k, v in sorted(by_type.items(), key=lambda kv: -kv[1]))
            + f"); a whole train_on_batch takes {r['train_step_ms']:.1f} ms."]
    for f in fws:
        lines += plan_step_lines(lay[f], None, LABELS[f] + ", course")
    return lines


def _x(v):
    return "—" if v is None else f"{v:.2f}×"


def _file(out, name, part, ext):
    return os.path.join(out, f"{part}.{ext}" if name == "results" else f"{name}-{part}.{ext}")


def machine_line(results):
    m = results["machine"]
    v = m["versions"]
    blas = m.get("numpy_blas") or {}
    parts = [f"**{m['cpu_model']}**, {m['logical_cores']} cores ({m.get('usable_cores')} usable), "
             f"{m.get('memory_gib')} GiB, {m['platform']}",
             f"Python {m['python']}, NumPy {v['numpy']} ({blas.get('name')} {blas.get('version')}), "
             f"Numba {v['numba']}, TensorFlow {v['tensorflow']} / Keras {v['keras']}, PyTorch {v['torch']}, "
             f"tinycnn {v['tinycnn']} (git {m.get('tinycnn_git_commit')})"]
    la = results["loadavg"]
    parts.append(f"{results['threads']} threads per framework (OMP/OPENBLAS/NUMBA_NUM_THREADS, TINYCNN_THREADS, "
                 f"TF intra/inter-op, torch.set_num_threads); load average (1/5/15 min) "
                 f"{'/'.join(f'{x:.2f}' for x in la['start'])} at the start, "
                 f"{'/'.join(f'{x:.2f}' for x in la.get('end', la['start']))} at the end")
    return parts


def seed_table(results):
    seed = results.get("seed") or {}
    fws = [f for f in ORDER if f in seed]
    if not fws:
        return []
    any_fw = seed[fws[0]]
    lines = [f"Seed model, MNIST, batch {any_fw['batch_size']}, {any_fw['train_images']:,} training images, "
             f"{any_fw['epochs']} epoch(s) per round, {any_fw['ms_per_step']['n']} round(s). "
             f"Median [min–max] over rounds; ratios are time ÷ the reference's time (> 1 = slower).", "",
             "| framework | train ms/step | fit ms/step (marginal) | s/epoch (incl. validation) | predict "
             f"{any_fw['predict_images']:,} images, s | peak RSS, MB | test accuracy | "
             "ms/step ÷ Keras | ms/step ÷ PyTorch | fit ms/step ÷ Keras | fit ms/step ÷ PyTorch | "
             "s/epoch ÷ Keras | s/epoch ÷ PyTorch |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for fw in fws:
        s = seed[fw]
        lines.append(f"| {LABELS[fw]} | {_fmt(s['ms_per_step'])} | {_fmt(s.get('fit_ms_per_step'))} | "
                     f"{_fmt(s['s_per_epoch'])} | "
                     f"{_fmt(s['predict_s'], 2)} | {_fmt(s['peak_rss_mb'], 0)} | {_fmt(s['test_accuracy'], 4)} | "
                     f"{_ratio(results, 'vs_keras', fw, 'ms_per_step')} | "
                     f"{_ratio(results, 'vs_pytorch', fw, 'ms_per_step')} | "
                     f"{_ratio(results, 'vs_keras', fw, 'fit_ms_per_step')} | "
                     f"{_ratio(results, 'vs_pytorch', fw, 'fit_ms_per_step')} | "
                     f"{_ratio(results, 'vs_keras', fw, 's_per_epoch')} | "
                     f"{_ratio(results, 'vs_pytorch', fw, 's_per_epoch')} |")
    run = next((r for r in (results.get("seed_runs") or {}).get(fws[0], []) if r.get("fit_steps")), None)
    if run:
        s1, s2 = run["fit_steps"]
        lines += ["", f"fit ms/step is the marginal cost of a step inside each framework's own training loop "
                      f"(Keras and tinycnn: model.fit; PyTorch: its loop), no validation: (time of {s2} batches "
                      f"− time of {s1}) ÷ {s2 - s1}, so what a fit call costs once cancels out."]
    nb = results.get("ratios", {}).get("vs_tinycnn_numpy", {}).get("tinycnn-numba")
    if nb:
        fit = f"{nb['fit_ms_per_step']:.2f}× the fit ms/step, " if nb.get("fit_ms_per_step") is not None else ""
        lines += ["", f"Numba ÷ NumPy backend: {nb['ms_per_step']:.2f}× the ms/step, {fit}"
                      f"{nb['s_per_epoch']:.2f}× the s/epoch, {nb['predict_s']:.2f}× the predict time."]
    return lines


def _round_ratios(results):
    """The results' per-round ratios, or computed from its runs (results written before they were kept)."""
    return results.get("round_ratios") or round_ratios(results.get("seed_runs") or {})


def fast_rounds_line(results):
    rr = _round_ratios(results)
    if not rr:
        return []
    med, ref = rr["median_fast_rounds"], rr["reference"]
    fast, n = rr["fast_rounds"], len(rr["rounds"])
    return [f"{LABELS[rr['framework']]} ÷ {LABELS[ref]} over Keras's fast rounds ({len(fast)} of {n}: "
            f"round{'s' if len(fast) > 1 else ''} {', '.join(map(str, fast))}, whose Keras s/epoch is within "
            f"{100 * rr['fast_within']:.0f}% of its fastest, {rr[f'fastest_{ref}_s_per_epoch']:.2f} s), "
            "median of the per-round ratios: " + ", ".join(
                f"{_x(med[m])} the {what}" for m, what in zip(ROUND_METRICS, ("ms/step", "fit ms/step", "s/epoch",
                                                                            "predict time"))
                if med[m] is not None) + "."]


def round_lines(results):
    """Round by round: tinycnn (Numba)'s time ÷ Keras's in the same round, and which rounds caught Keras fast."""
    rr = _round_ratios(results)
    if not rr:
        return []
    ref = rr["reference"]
    lines = [f"Round by round, {LABELS[rr['framework']]}'s time ÷ {LABELS[ref]}'s in the same round (each round "
             f"runs every framework once, in rotated order). Keras switches between a fast and a slow mode "
             f"from round to round; a round is fast if its Keras s/epoch is within "
             f"{100 * rr['fast_within']:.0f}% of Keras's fastest round in this run.", "",
             "| round | Keras s/epoch | Keras fast? | ms/step ÷ Keras | fit ms/step ÷ Keras | s/epoch ÷ Keras | "
             "predict ÷ Keras |", "|---|---|---|---|---|---|---|"]
    for row in rr["rounds"]:
        lines.append(f"| {row['round']} | {row[f'{ref}_s_per_epoch']:.2f} | {'yes' if row[f'{ref}_fast'] else 'no'} | "
                     + " | ".join(_x(row[m]) for m in ROUND_METRICS) + " |")
    med = rr["median_all_rounds"]
    lines.append("| median, all rounds | | | " + " | ".join(_x(med[m]) for m in ROUND_METRICS) + " |")
    med = rr["median_fast_rounds"]
    lines.append("| median, Keras's fast rounds | | | " + " | ".join(_x(med[m]) for m in ROUND_METRICS) + " |")
    return lines + [""] + fast_rounds_line(results)


def jit_lines(results):
    jit = results.get("jit")
    if not jit:
        return []
    lines = ["| Numba cache | import numba, s | first train step, s | steady step, s | first predict, s | "
             "compile time (first − steady), s |", "|---|---|---|---|---|---|"]
    for key in ("cold", "warm"):
        j = jit.get(key)
        if j:
            lines.append(f"| {key} | {j['import_numba_s']:.2f} | {j['first_step_s']:.2f} | {j['steady_step_s']:.3f} "
                         f"| {j['first_predict_s']:.3f} | {j['compile_s']:.2f} |")
    return lines + ["", "Compilation is outside every timing above: each worker warms up before it measures."]


def scaling_lines(results):
    sc = results.get("scaling") or {}
    fws = [f for f in ORDER if f in sc]
    if not fws:
        return []
    lines = []
    for sweep, key, title in (("batch", "batch_size", "batch size (28×28 images)"),
                              ("image", "image_size", "image size")):
        rows = {fw: [r for r in sc[fw] if r["sweep"] == sweep] for fw in fws}
        xs = sorted({r[key] for fw in fws for r in rows[fw]})
        if not xs:
            continue
        extra = "" if sweep == "batch" else f" (batch {rows[fws[0]][0]['batch_size']})"
        lines += ["", f"Train ms/step against {title}{extra}; ms per image in parentheses.", "",
                  f"| {key.replace('_', ' ')} | " + " | ".join(LABELS[f] for f in fws) + " |",
                  "|---" * (len(fws) + 1) + "|"]
        for x in xs:
            cells = []
            for fw in fws:
                r = next((r for r in rows[fw] if r[key] == x), None)
                cells.append("—" if r is None else f"{r['ms_per_step']['median']:.1f} ({r['ms_per_image']:.2f})")
            lines.append(f"| {x} | " + " | ".join(cells) + " |")
    return lines


def layer_lines(results):
    lay = results.get("layers")
    if not lay:
        return []
    b = lay["backends"]
    fws = [f for f in ("tinycnn-numba", "tinycnn-numpy") if f in b]
    first = b[fws[0]]
    lb = lay["lower_bound"]
    lines = [f"Measured float32 matmul peak (NumPy sgemm, {first['matmul_peak']['n']}³, best of "
             f"{first['matmul_peak']['repeats']}): **{lay['matmul_peak_gflops']:.1f} GFLOP/s**. "
             f"A training step of batch {first['batch_size']} is {lb['train_flops_per_image'] * first['batch_size'] / 1e9:.2f} "
             f"GFLOP computed directly (as im2col does), so the roofline lower bound for that arithmetic is "
             f"**{lb['ms_per_step']:.1f} ms/step** and **{lb['s_per_epoch']:.2f} s/epoch** (60,000 training + "
             f"10,000 validation images). The Numba backend computes the 3×3 convolutions with 32 or more input "
             f"channels by Winograd's F(6×6, 3×3), with about a fifth of those multiplications. Its "
             f"\"% of peak\" still counts the direct FLOPs, so it can exceed what its products run at.", "",
             "| layer | output | fwd GFLOP | bwd GFLOP | " + " | ".join(
                 f"{LABELS[f]} fwd ms (% peak) | bwd ms (% peak)" for f in fws) + " |",
             "|---|---|---|---|" + "---|---|" * len(fws)]

    def cell(row, d):
        pct = row.get(f"{d}_pct_of_peak")
        return f"{row[f'{d}_ms']:.2f}" + ("" if pct is None else f" ({pct:.0f}%)")

    for i, row in enumerate(first["layers"]):
        cells = []
        for f in fws:
            r = b[f]["layers"][i]
            cells += [cell(r, "forward"), cell(r, "backward")]
        lines.append(f"| {row['name']} ({row['type']}) | {'×'.join(map(str, row['out_shape']))} | "
                     f"{row['forward_flops'] / 1e9:.3f} | {row['backward_flops'] / 1e9:.3f} | " + " | ".join(cells) + " |")
    lines.append("| Adam update | | | | " + " | ".join(f"— | {b[f]['adam_ms']:.2f}" for f in fws) + " |")
    lines += ["", "Each layer's own forward(training=True) and backward, run one after another as the reference "
                  "plan runs them (on the Numba backend through its kernels); every layer's backward returns "
                  "dL/dx, the first layer's included."]
    for f in fws:
        r = b[f]
        total = sum(x["forward_ms"] + x["backward_ms"] for x in r["layers"]) + r["adam_ms"]
        lines.append("")
        lines.append(f"{LABELS[f]}: layers + Adam sum to {total:.1f} ms; a whole train_on_batch takes "
                     f"{r['train_step_ms']:.1f} ms, {r['train_step_ms'] / lb['ms_per_step']:.1f}× the roofline bound.")
    for f in fws:
        lines += plan_step_lines(b[f], lay.get("matmul_peak_gflops"), LABELS[f])
    return lines


def plan_step_lines(r, peak, label):
    """The fast plan's steps, each on the whole batch as one slice on one thread."""
    steps = r.get("plan_steps")
    if not steps:
        return []
    lines = ["", f"{label}, the fast plan's steps: each on the whole batch of {r['batch_size']} as one slice on one "
                 f"thread (begin, forward in order, backward in reverse with no dL/dx for the first step, end), "
                 f"beside the same layers' own calls above. In training the plan cuts the batch into one slice "
                 f"per core. Steps that run between the slices (BatchNormStep, LayerStep) run here as in training, "
                 f"on the whole batch, with their kernels on every core.", "",
             "| step | layers | fwd ms (% peak) | bwd ms (% peak) | begin + end ms | its layers' fwd ms | "
             "its layers' bwd ms |", "|---|---|---|---|---|---|---|"]

    def cell(row, d):
        flops, ms = row[f"{d}_flops"], row[f"{d}_ms"]
        pct = 100 * flops / (ms / 1000) / (peak * 1e9) if flops and ms > 0 and peak else None
        return f"{ms:.2f}" + ("" if pct is None else f" ({pct:.0f}%)")

    for row in steps:
        lines.append(f"| {row['step']} | {' + '.join(row['layers'])} | {cell(row, 'forward')} | {cell(row, 'backward')} | "
                     f"{row['begin_ms'] + row['end_ms']:.2f} | {row['layers_forward_ms']:.2f} | "
                     f"{row['layers_backward_ms']:.2f} |")
    total = sum(x["begin_ms"] + x["forward_ms"] + x["backward_ms"] + x["end_ms"] for x in steps)
    layers = sum(x["layers_forward_ms"] + x["layers_backward_ms"] for x in steps)
    return lines + ["", f"The steps sum to {total:.1f} ms on one thread, the same layers' own calls to {layers:.1f} ms. "
                        f"Adam adds {r['adam_ms']:.2f} ms; a whole train_on_batch, one slice per core, takes "
                        f"{r['train_step_ms']:.1f} ms."]


def parity_lines(results):
    par = results.get("parity")
    if not par:
        return []
    lines = ["| tinycnn backend | direction | weights | same order & shapes | round trip exact | images | "
             "max abs diff | argmax agreement | tinycnn acc | Keras acc |", "|---|---|---|---|---|---|---|---|---|---|"]
    for backend in ("numba", "numpy"):
        p = par.get("backends", {}).get(backend)
        if not p:
            continue
        for d in ("tinycnn_to_keras", "keras_to_tinycnn"):
            e = p[d]
            lines.append(f"| {backend} | {d.replace('_', ' ')} | {'trained' if e['weights'] == 'given' else 'initial'} | "
                         f"{p['same_order_and_shapes']} | {e['round_trip_exact']} | {e['images']:,} | "
                         f"{e['max_abs_diff']:.2e} | {100 * e['argmax_agreement']:.2f}% | "
                         f"{e.get('tinycnn_accuracy', float('nan')):.4f} | {e.get('keras_accuracy', float('nan')):.4f} |")
    return lines


def plots(results, out, name):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    files = []
    seed = results.get("seed") or {}
    fws = [f for f in ORDER if f in seed]
    colors = {"tinycnn-numba": "tab:blue", "tinycnn-functional": "tab:purple", "tinycnn-numpy": "tab:cyan",
              "keras": "tab:orange", "pytorch": "tab:red"}
    if fws:
        fig, axes = plt.subplots(1, 3, figsize=(13, 4))
        for ax, metric, title in zip(axes, ("ms_per_step", "s_per_epoch", "predict_s"),
                                     ("train ms/step (batch 128)", "s/epoch incl. validation",
                                      f"predict {seed[fws[0]]['predict_images']:,} images, s")):
            med = [seed[f][metric]["median"] for f in fws]
            lo = [seed[f][metric]["median"] - seed[f][metric]["min"] for f in fws]
            hi = [seed[f][metric]["max"] - seed[f][metric]["median"] for f in fws]
            ax.bar(range(len(fws)), med, yerr=[lo, hi], capsize=4, color=[colors[f] for f in fws])
            ax.set_xticks(range(len(fws)), [LABELS[f].replace(" (", "\n(") for f in fws], fontsize=8)
            ax.set_title(title, fontsize=10)
            for i, m in enumerate(med):
                ax.annotate(f"{m:.3g}", (i, m), ha="center", va="bottom", fontsize=8,
                            xytext=(8, 2), textcoords="offset points")
        m = results["machine"]
        fig.suptitle(f"Seed model on MNIST: median over {seed[fws[0]]['ms_per_step']['n']} round(s), "
                     f"whiskers min–max; {m['cpu_model']}, {results['threads']} threads", fontsize=10)
        fig.tight_layout()
        path = _file(out, name, "seed", "png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        files.append(path)
    sc = results.get("scaling") or {}
    sfws = [f for f in ORDER if f in sc]
    if sfws:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, sweep, key, xlabel in ((axes[0], "batch", "batch_size", "batch size (28×28)"),
                                       (axes[1], "image", "image_size", "image side, pixels")):
            for f in sfws:
                rows = sorted((r for r in sc[f] if r["sweep"] == sweep), key=lambda r: r[key])
                if rows:
                    ax.loglog([r[key] for r in rows], [r["ms_per_step"]["median"] for r in rows], "o-",
                              color=colors[f], label=LABELS[f])
            ax.set_xlabel(xlabel)
            ax.set_ylabel("ms per train step")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        rows = [r for r in sc[sfws[0]] if r["sweep"] == "image"]
        axes[1].set_title(f"batch {rows[0]['batch_size']}" if rows else "", fontsize=10)
        axes[0].set_title("time per step against batch size", fontsize=10)
        fig.tight_layout()
        path = _file(out, name, "scaling", "png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        files.append(path)
    lay = results.get("layers")
    if lay:
        b = lay["backends"]
        lfws = [f for f in ("tinycnn-numba", "tinycnn-numpy") if f in b]
        fig, ax = plt.subplots(figsize=(10, 4))
        names = [r["name"] for r in b[lfws[0]]["layers"]] + ["adam"]
        width = 0.8 / len(lfws)
        for k, f in enumerate(lfws):
            fwd = [r["forward_ms"] for r in b[f]["layers"]] + [0]
            bwd = [r["backward_ms"] for r in b[f]["layers"]] + [b[f]["adam_ms"]]
            xs = [i + (k - (len(lfws) - 1) / 2) * width for i in range(len(names))]
            ax.bar(xs, fwd, width, color=colors[f], label=f"{LABELS[f]} forward")
            ax.bar(xs, bwd, width, bottom=fwd, color=colors[f], alpha=0.45, hatch="//",
                   label=f"{LABELS[f]} backward (Adam: update)")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("ms (batch %d)" % b[lfws[0]]["batch_size"])
        ax.set_title(f"per-layer time; roofline bound {lay['lower_bound']['ms_per_step']:.1f} ms/step at "
                     f"{lay['matmul_peak_gflops']:.0f} GFLOP/s", fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = _file(out, name, "layers", "png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        files.append(path)
    return files


def write(results, out, name):
    files = plots(results, out, name)
    rel = {os.path.basename(p).rsplit(".", 1)[0].split("-")[-1]: os.path.relpath(p, REPO) for p in files}
    md = ["# tinycnn benchmarks", "", f"`{results['command']}`, {results['created']}, "
          f"{results.get('wall_s', 0) / 60:.1f} min.", ""]
    md += [f"- {line}" for line in machine_line(results)]
    for fw, why in results.get("skipped", {}).items():
        md.append(f"- {why}")
    rounds, functional = round_lines(results), functional_lines(results)
    rounds += [""] + functional if rounds and functional else functional
    sections = [("Seed workload", seed_table(results) + ([""] + rounds if rounds else []), "seed"),
                ("Course workload", course_table(results) + course_round_lines(results)
                 + course_layer_lines(results), None),
                ("Numba JIT compile time", jit_lines(results), None),
                ("Scaling", scaling_lines(results), "scaling"),
                ("Per-layer times and roofline", layer_lines(results), "layers"),
                ("Keras parity", parity_lines(results), None)]
    for title, lines, plot in sections:
        if lines:
            md += ["", f"## {title}", ""] + lines
            if plot in rel:
                md += ["", f"![{title}]({os.path.basename(rel[plot])})"]
    if results.get("errors"):
        md += ["", "## Errors", ""] + [f"- {e['framework']} {e['task']}: {e['error']}" for e in results["errors"]]
    md_path = os.path.join(out, f"{name}.md")
    with open(md_path, "w") as f:
        f.write("\n".join(md) + "\n")
    readme = ["## Performance", "",
              f"Measured by `{results['command']}` ({results['created'][:10]}); "
              f"full report: [benchmarks/results/{name}.md](benchmarks/results/{name}.md), "
              f"raw numbers: [{name}.json](benchmarks/results/{name}.json).", ""]
    readme += [f"- {line}" for line in machine_line(results)]
    readme += ["", "The machine is shared and noisy: quote medians, and read the load average with them."]
    busy = max(results["loadavg"]["start"][0], results["loadavg"].get("end", [0])[0])
    if busy > results["machine"]["logical_cores"]:
        readme += [f"During this run other jobs kept it busy (1-minute load average up to {busy:.1f} on "
                   f"{results['machine']['logical_cores']} cores), which inflates every absolute time; the "
                   f"ratios, measured interleaved under the same load, are the more meaningful numbers."]
    readme += [""]
    readme += seed_table(results)
    fast = fast_rounds_line(results)
    fast += [""] + functional if fast and functional else functional
    readme += [""] + fast if fast else []
    course = course_table(results)
    readme += [""] + course if course else []
    if "seed" in rel:
        readme += ["", f"![seed benchmark]({rel['seed']})"]
    lay = results.get("layers")
    if lay:
        readme += ["", f"Roofline: the measured float32 matmul peak is {lay['matmul_peak_gflops']:.1f} GFLOP/s, "
                       f"so computing this model's convolutions directly (as im2col does), no framework can train "
                       f"an epoch faster than {lay['lower_bound']['s_per_epoch']:.2f} s here "
                       f"({lay['lower_bound']['ms_per_step']:.1f} ms/step). Winograd's algorithm, which the Numba "
                       f"backend uses for conv2, needs fewer multiplications, so that floor does not bind it."]
    jit = results.get("jit") or {}
    if jit.get("cold") and jit.get("warm"):
        readme += ["", f"Numba compiles its kernels in {jit['cold']['compile_s']:.1f} s on a cold cache and "
                       f"loads them in {jit['warm']['compile_s']:.1f} s from a warm one; the timings above exclude it."]
    if "scaling" in rel:
        readme += ["", f"Scaling with batch and image size: ![scaling]({rel['scaling']})"]
    with open(os.path.join(out, "README_section.md"), "w") as f:
        f.write("\n".join(readme) + "\n")
    return files + [md_path, os.path.join(out, "README_section.md")]
