"""Train the compiled core and the NumPy reference side by side and measure how far apart they are.

Both models are built from the same hyperparameters and seed, so they start from the same
weights and visit the samples in the same order: any difference is floating-point rounding
(a different summation order, fused multiply-adds, a vectorised exp), compounded over steps.
"""

from __future__ import annotations

import numpy as np

from .trainer import DivergenceError

# Agreement bounds after whole epochs, per dtype. float64: the two backends' runs side by side;
# rounding differences of one ulp per step (1e-16) stay near it (measured on MNIST 784-128-10
# sigmoid: per-sample, one epoch, max|dW| 1.3e-12 of max|W|; batch 32, 2 epochs, 2e-15).
#
# float32: not the two runs side by side. Where one ulp (6e-8) decides which side of a ReLU's
# kink a unit lands, or whether an Adam moment is flushed, a float32 run parts from the exact
# result by far more than rounding, and two float32 runs part from each other as much: Adam at
# its default rate on 16,000 MNIST images, relu, batch 32, two epochs: max|dW| 2.6e-2 of max|W|
# between the two backends in float32, 2.6e-2 between the NumPy reference in float32 and in
# float64, 1e-13 between the backends in float64. A fixed bound on the float32 runs either calls
# that a fault or misses one (a gradient 0.3% off over 1,000 images moves the weights by ~1e-3,
# rounding by ~1e-6). So both float32 runs are measured against a third, the NumPy reference in
# float64 from the same initial weights: the compiled run must be as close to it as the float32
# reference is (``rounding_factor`` times its distance), or within the floors (weights_rtol,
# loss_rtol, accuracy_atol). Across 1,000-16,000 images, batch 1 and 32, SGD, momentum, Adam and
# dropout, sigmoid and relu (2026-12-04, AMD EPYC Zen 2; BENCHMARKS.md), the compiled run's
# distance was 0.5-2.9 times the reference's wherever training was stable, and 6.5x and 1,600x
# where one float32 run crossed a kink the other did not; this rule flagged 6 of the 180 epochs
# (5 of them per-sample relu at an effective rate of 0.1, where training is unstable and runs
# part), the old bound of the two float32 runs side by side 31 (on the weights alone).
TOLERANCES = {
    "float32": {"weights_rtol": 1e-4, "loss_rtol": 1e-4, "accuracy_atol": 2e-3, "rounding_factor": 10.0},
    "float64": {"weights_rtol": 1e-8, "loss_rtol": 1e-8, "accuracy_atol": 1e-4},
}
REFERENCE = "float64"  # the dtype of the third run, where the compared ones are float32

# Where the backends part, how far rounding alone moves a run: the NumPy run again from a start 1 ulp
# away (every weight nudged up). Training that amplifies rounding (per-sample or small batches at
# momentum 0.9-0.99, a rate near the edge of stability) parts from itself that far: in audit 54
# (2026-12-06), 36 of the 37 float64 settings in 761 that broke the 1e-8 bound were within 27x of
# it. A gap within CHAOS_FACTOR times that spread is rounding amplified ("chaotic"), which no
# comparison of the two backends' last bits can tell apart from a fault; stable training moves
# about 1e-15 of max|W| from such a nudge (README), where a fault is 1e-8 or more. A nudged run that
# diverges is chaotic too. Not every part made by rounding shows: a float32 run that crosses a
# ReLU's kink the other does not may leave a nudged run on its side (audit 54: 1 seed in 24).
CHAOS_FACTOR = 30.0

# float32, where the backends part (and, for this test, the nudged NumPy run does not explain it:
# not chaotic): the compiled run itself again from starts 1 ulp away (every weight up; down; three
# random mixes of the two, default_rng(k)), each judged by ``within`` at PROBE_FACTOR instead of ``rounding_factor``
# against the same NumPy float32 and float64 runs, after every epoch up to the first out of
# tolerance. One that comes back within shows that the part hangs on the start's last bits:
# rounding, not a fault. Audit 70 (2026-12-07, AMD EPYC Zen 4, 561 runs): all 3 set-ups known to
# part by rounding without being chaotic came back (session 64's Adam case from 3 of the 5 starts,
# per-sample relu SGD 0.1 only from the 4th and 5th); of 288 deliberate faults that compare flagged
# in settings that agree unfaulted (a step 0.03-1% long, momentum + 1e-3, weight decay x1.01, Adam's
# eps x10 or beta2 0.9985, a sample skipped or two swapped, an output bias's or a hidden unit's
# change x1.01-1.1), none came back at a factor of 3; at 10, one did (weight decay x1.01, whose
# relu kink-crossing 17x the bound one nudged start escaped). In the three rounding set-ups faults
# came back only if smaller, in float64, than 0.3 of the bound there (9 of 48).
PROBE_FACTOR = 3.0
PROBE_MASKS = (0, 1, 2)  # the random mixes' default_rng seeds, after all up and all down

# float32, where the nudged NumPy run parts by at least 1/CHAOS_FACTOR of the gap: chaotic only if the compiled
# run parts from itself too, i.e. if one of its runs from the same nudged starts (``_compiled_probes``) ends,
# at the first epoch out of tolerance, at least 1/SCATTER_FACTOR of the gap away from it. A fault that is not
# rounding moves the compiled run alike from every start; where training amplifies rounding, the compiled
# run's own nudged runs scatter too. Audit 71 (2026-12-07, AMD EPYC Zen 4): in settings that agree unfaulted,
# the NumPy test alone called 32 of 64 disagreeing deliberate faults chaotic (its nudged run parting 2-8.5x
# as far as the NumPy float32 run from float64: Adam at batch 128, per-sample momentum, weight decay x1.01,
# a step 1% long); 10 of them have every nudged compiled run within 0.13 of the gap of the compiled run, and
# are not chaotic here. All 28 unfaulted chaotic settings found (per-sample relu/tanh at lr 0.1 or momentum
# 0.9) stay chaotic: their nudged compiled runs part by 0.88x the gap or more, and by 0.21x in one (relu SGD
# 0.1 seed 18, 784-64-10, 1,000 images: 9.9x the NumPy spread, identical backends in float64), hence 10, not 3.
SCATTER_FACTOR = 10.0

# float32, where both tests above say chaotic: the compiled run again in float64 from the same start (cast), side
# by side with the float64 reference run by TOLERANCES["float64"], at the first epoch out of tolerance. Float64
# rounds 2**29 times finer, so rounding amplified as far as the float32 gap leaves the float64 runs at most ~1e-5 of
# that gap apart, or, where training amplifies even that to the full spread (per-sample tanh at lr 0.1), as far
# apart as the float64 NumPy run from a start 1 ulp away parts from it (compare --dtype float64's test,
# CHAOS_FACTOR); a fault moves the float64 run about as far as the float32 one. So a fault: the float64 runs part by
# at least 1/FLOAT64_FACTOR of the gap and by more than CHAOS_FACTOR times that nudged run's spread. Audit 72
# (2026-12-07, AMD EPYC Zen 4): of the 22 deliberate faults the tests above call chaotic in settings that agree
# unfaulted, this flags 17 (all 7 that audit 71 found visible in float64; the 5 left part float64 runs as a nudge
# does); of 62 unfaulted chaotic settings (per-sample relu/tanh at lr 0.1 or momentum 0.9), none. There, the
# float64 gap is at most 2.4e-5 of the float32 one where it exceeds 30x the nudged spread (2 settings: 41x, 44x),
# and at most 1.6x the spread where it reaches 1e-3 of the float32 gap (18, saturated); the faults flagged part
# by 0.018-1.4 of the gap and 4,200x the spread or more. Either test alone flags unfaulted settings (2; 18).
FLOAT64_FACTOR = 1000.0
# float64, where the NumPy run from the start nudged up parts by less than 1/CHAOS_FACTOR of the gap: the NumPy run
# again from the other nudged starts (``_nudged_starts``: all down, then the three random mixes), in turn, up to the
# first epoch out of tolerance; chaotic if one of them parts that far (or diverges). Where training amplifies
# rounding, how far one nudge moves a run is itself a draw: audit 74 (2026-12-07, AMD EPYC Zen 4), through ``compare
# --dtype float64`` on per-sample relu/tanh at lr 0.1 or at lr 0.01 momentum 0.9 (784-32/64/128-10, 1,000-2,000 MNIST
# images, 2 epochs, 120 sampled settings, 107 of which part), the gap was 0.08-317x the nudged-up run's spread, and 2
# honest settings read as a fault on it (784-128-10 relu, 1,000 images, lr 0.1, seed 95: 317x; 2,000 images, lr 0.01
# momentum 0.9, seed 38: 40x); against the largest of the five spreads, 3.0x at most (of the first three, 10.5x).
# Faults planted in settings that agree unfaulted (72 runs: a step 0.1% or 1% long, weight decay x1.01, a bias's or a
# unit's steps x1.1, a sample skipped) part the runs 8.7e9 times as far as any nudged run or more; in these chaotic
# settings, at their first epoch (25), 2.7e4 times. The compiled run's own nudged runs are not asked: a fault that is
# itself noisy (a sample skipped at random, as a race would) scatters them as chaos does (all 14 such faults would
# read chaotic). The float32 test, with its further ones below, keeps the one nudged run.
NUDGED_SPREADS = len(PROBE_MASKS) + 2
PROBE_NAMES = ("up", "down") + tuple(f"up or down at random (default_rng({seed}))" for seed in PROBE_MASKS)


def compare_backends(make_model, X, y, X_test, y_test, *, epochs, fit_kwargs, tolerance):
    """Train ``make_model("numba")`` and ``make_model("numpy")`` epoch by epoch, one run of
    ``epochs`` epochs each (``fit_kwargs``: MLP.fit's training options, optimizer and schedule
    included); float32 models also against a third run, the NumPy one in float64 from the
    same initial weights (see TOLERANCES). ``make_model(backend)`` returns a new, untrained
    ``MLP`` on that backend (the same network and seed each time); ``X``, ``y`` train it and
    ``X_test``, ``y_test`` score it after each epoch (as ``MLP.fit`` and ``MLP.evaluate`` take
    them); ``tolerance`` is one of ``TOLERANCES``' dicts (the models' dtype's).

    Returns a dict: ``epochs`` (one record per epoch, numbered ``epoch`` from 1, with each run's train loss and accuracy,
    test loss and accuracy, ``max_abs_weight_diff`` between the backends and ``max_abs_weight``;
    for float32 also ``float64``, the reference's, and ``max_abs_weight_diff_from_float64`` of
    each backend; the last record with ``stopped``, each run's reason or None (the float64
    reference's too), where a run stopped before ``epochs``: early stopping, the adaptive rate's
    floor; ``within_tolerance``,
    whether it agrees), ``tolerance`` and ``agree`` (every epoch within the tolerance, and the runs stopped together).
    Where they do not agree, also ``rounding_spread`` (after each epoch up to the first out of
    tolerance, max|W - W'| between the NumPy run and the same run from a start 1 ulp away:
    ``CHAOS_FACTOR``), float64 runs ``nudged_spreads`` (``_nudged_spreads``: at that epoch, the NumPy run's
    distance from its runs from the nudged starts, up to the first within CHAOS_FACTOR times), ``chaotic`` (that
    epoch parted by no more than CHAOS_FACTOR times it; float64: times one of ``nudged_spreads``, which must reach
    1/CHAOS_FACTOR of the weights bound too) and
    ``rounding`` (chaotic, or, float32, a compiled run from a start 1 ulp away came back within
    tolerance: ``PROBE_FACTOR``); float32 runs also ``compiled_probes``, whether each compiled
    run from a nudged start was within tolerance up to that epoch, and ``compiled_spread``, how far
    each ended from the compiled run at that epoch (they end at the first within tolerance, or,
    where the NumPy run from a nudged start parted by at least 1/CHAOS_FACTOR of the gap, at the
    first that parts from the compiled run by 1/SCATTER_FACTOR of it: then float32 runs are
    chaotic, and otherwise not); where float32 runs are chaotic by both, ``compiled_float64``
    (``_compiled_float64``: the compiled run in float64 from the same start against the float64
    reference; its ``fault`` makes them not chaotic, nor rounding: FLOAT64_FACTOR).
    """
    models = {name: make_model(name) for name in ("numba", "numpy")}
    for number, model in enumerate(models.values()):  # (init="zeros": its SymmetryWarning once, not per run)
        model._initialize(symmetry_warning=number == 0)
    if np.dtype(models["numpy"].arch_.dtype) != np.dtype(REFERENCE):
        reference = make_model("numpy")
        reference.dtype = REFERENCE
        reference._initialize(symmetry_warning=False)
        reference.params_ = models["numpy"].params_.astype(REFERENCE)  # the float32 runs' start, exactly
        models[REFERENCE] = reference
    start = models["numpy"].params_.copy()
    numpy_params = []  # the NumPy run's weights after each epoch up to the first out of tolerance
    numba_params = []  # (float32) the compiled run's, as far
    reference_params = []  # (float32) the float64 run's, as far
    stops = []  # each epoch's runs' stopped reasons
    records = []
    agree = True
    for epoch in range(1, epochs + 1):
        record = {"epoch": epoch}
        for name, model in models.items():
            history = model.partial_fit(X, y, epochs=1, schedule_epochs=epochs, progress=False, **fit_kwargs)
            test = model.evaluate(X_test, y_test)
            record[name] = {
                "train_loss": history.loss[-1],
                "train_accuracy": history.accuracy[-1] if model.arch_.is_classifier else None,
                "test_loss": test["loss"],
                "test_accuracy": test["accuracy"],
                "seconds": history.seconds[-1],
            }
        params = {name: model.params_.astype(np.float64) for name, model in models.items()}
        if agree:  # (in its own dtype: a copy an epoch, only so far)
            numpy_params.append(models["numpy"].params_.copy())
            if REFERENCE in models:
                reference_params.append(params[REFERENCE])
                numba_params.append(params["numba"])
        record["max_abs_weight_diff"] = _distance(params["numba"], params["numpy"])
        record["max_abs_weight"] = float(np.max(np.abs(params[REFERENCE if REFERENCE in models else "numpy"])))
        if REFERENCE in models:
            record[f"max_abs_weight_diff_from_{REFERENCE}"] = {
                name: _distance(params[name], params[REFERENCE]) for name in ("numba", "numpy")}
        # a run that stopped (early stopping, the adaptive rate's floor) ends here, as ``fit`` ends
        # it; the compiled run must stop where the reference does
        stopped = {name: model.run_.stopped for name, model in models.items()}
        stops.append(stopped)
        record["within_tolerance"] = within(record, tolerance) and _stopped_together(stopped)
        agree &= record["within_tolerance"]
        records.append(record)
        if any(reason is not None for reason in stopped.values()):  # (the float64 reference's too: audit 70)
            record["stopped"] = stopped
            break
    result = {"epochs": records, "tolerance": tolerance, "agree": bool(agree)}
    if REFERENCE in models:
        result["loose_from"] = loose_from(records, tolerance)
    if not agree:
        spread = _rounding_spread(make_model, start, numpy_params, X, y, epochs, fit_kwargs)
        result.update(rounding_spread=spread, chaotic=chaotic(records, spread))
        if REFERENCE not in models:  # float64: one nudge is one draw; the other nudged starts too (audit 74)
            first, gap = first_gap(records)
            # where the weights agree within the bound and the train loss or test accuracy parts the runs, the nudge
            # must move the weights as far as the bound: a nudge of 1e-16 explains no fault in the loss (audit 74)
            need = max(gap, tolerance["weights_rtol"] * records[first]["max_abs_weight"])
            result["nudged_spreads"] = _nudged_spreads(make_model, start, first, need, numpy_params, spread, X, y,
                                                       epochs, fit_kwargs)
            result["chaotic"] = any(distance * CHAOS_FACTOR >= need for distance in result["nudged_spreads"])
        if REFERENCE in models:  # the compiled run's own nudged runs: chaos must show in them too (audit 71)
            probes, parted = _compiled_probes(make_model, start, records, reference_params, numba_params, stops, X, y,
                                              X_test, y_test, epochs, fit_kwargs, tolerance, result["chaotic"])
            if result["chaotic"]:
                _, gap = first_gap(records)
                result["chaotic"] = any(distance >= gap / SCATTER_FACTOR for distance in parted)
            result.update(compiled_probes=probes, compiled_spread=parted)
            if result["chaotic"]:  # and the compiled run in float64, where rounding is 2**29 times finer (audit 72)
                result["compiled_float64"] = _compiled_float64(make_model, start, records, reference_params, stops,
                                                               X, y, X_test, y_test, epochs, fit_kwargs)
                result["chaotic"] = not result["compiled_float64"]["fault"]
        fault = result.get("compiled_float64", {}).get("fault", False)
        result["rounding"] = result["chaotic"] or (any(result.get("compiled_probes", [])) and not fault)
    return result


def loose_from(records, tolerance):
    """(float32) The first epoch whose weights bound, ``rounding_factor`` times the float32 NumPy run's
    distance from the float64 one, is max|W| or more (any weights near the reference's pass it: the
    training has amplified float32's rounding that far), or None. Audit 72: 784-64-10 tanh per-sample
    SGD at lr 0.1, 1,000 images, seed 4, "agreed" with both float32 runs 0.86-1.38 from float64, max|W|
    1.09-1.54."""
    for record in records:
        bound = tolerance["rounding_factor"] * record[f"max_abs_weight_diff_from_{REFERENCE}"]["numpy"]
        if bound >= record["max_abs_weight"]:
            return record["epoch"]
    return None


def first_gap(records):
    """(index, gap) of the first record out of tolerance: the backends' max|dW| (float64), or
    the compiled run's distance from the float64 reference (float32 runs)."""
    first = next(i for i, record in enumerate(records) if not record["within_tolerance"])
    record = records[first]
    if REFERENCE in record:
        return first, record[f"max_abs_weight_diff_from_{REFERENCE}"]["numba"]
    return first, record["max_abs_weight_diff"]


def chaotic(records, spread):
    """Whether the first record out of tolerance parted by no more than CHAOS_FACTOR times the
    NumPy run's ``spread`` from a nudged start after that epoch (inf: that run diverged)."""
    first, gap = first_gap(records)
    return bool(gap <= CHAOS_FACTOR * spread[first])


def _rounding_spread(make_model, start, numpy_params, X, y, epochs, fit_kwargs, nudged=None):
    """After each epoch, max|W - W'| between the NumPy run (``numpy_params``) and the same run
    from ``start`` nudged by one ulp up (or from ``nudged``; inf after a divergence of its own)."""
    model = make_model("numpy")
    model._initialize(symmetry_warning=False)
    model.params_ = np.nextafter(start, np.inf) if nudged is None else nudged
    spread = []
    for params in numpy_params:
        try:
            model.partial_fit(X, y, epochs=1, schedule_epochs=epochs, progress=False, **fit_kwargs)
        except DivergenceError:
            spread += [np.inf] * (len(numpy_params) - len(spread))
            break
        spread.append(_distance(model.params_.astype(np.float64), params.astype(np.float64)))
    return spread


def _nudged_spreads(make_model, start, first, need, numpy_params, spread, X, y, epochs, fit_kwargs):
    """(float64) At epoch ``first`` (0-based: the first out of tolerance), max|W - W'| between the NumPy run and its
    runs from ``_nudged_starts(start)`` in turn (the first is ``spread``'s, the start nudged up), up to the first that
    parts by at least 1/CHAOS_FACTOR of ``need`` (the gap, or the weights bound if more; inf: it diverged):
    NUDGED_SPREADS of them where none does."""
    spreads = [spread[first]]
    for nudged in list(_nudged_starts(start))[1:NUDGED_SPREADS]:
        if spreads[-1] * CHAOS_FACTOR >= need:
            break
        spreads.append(_rounding_spread(make_model, start, numpy_params[: first + 1], X, y, epochs, fit_kwargs,
                                        nudged=nudged)[first])
    return spreads


def _nudged_starts(start):
    """``start`` one ulp up, one ulp down, and mixes of the two (``PROBE_MASKS``), in turn."""
    up, down = np.nextafter(start, np.inf), np.nextafter(start, -np.inf)
    yield up
    yield down
    for seed in PROBE_MASKS:
        yield np.where(np.random.default_rng(seed).integers(0, 2, start.size).astype(bool), up, down)


def _compiled_probes(make_model, start, records, reference_params, numba_params, stops, X, y, X_test, y_test, epochs,
                     fit_kwargs, tolerance, amplified=False):
    """For each start of ``_nudged_starts(start)`` in turn: whether the compiled run from it is
    within ``tolerance`` (at PROBE_FACTOR) after every epoch up to the first out of it, each
    epoch's record as ``records``' (the same NumPy float32 and float64 runs) with this run's results
    (a run that diverges is not), and how far it ends from the compiled run (``numba_params``) at
    that epoch (inf if it diverged; None where it was not run that far: out of tolerance sooner,
    and not ``amplified``). They end at the first within tolerance, or, ``amplified`` (the NumPy
    run from a nudged start parted as far as the gap), at the first at least 1/SCATTER_FACTOR of
    the gap from the compiled run."""
    first, gap = first_gap(records)
    tolerance = {**tolerance, "rounding_factor": min(tolerance["rounding_factor"], PROBE_FACTOR)}
    probes, parted = [], []
    for nudged in _nudged_starts(start):
        model = make_model("numba")
        model._initialize(symmetry_warning=False)
        model.params_[...] = nudged  # (in place: the model's own aligned array)
        ok, distance = True, None
        for record, params, stopped in zip(records[: first + 1], reference_params, stops):
            try:
                history = model.partial_fit(X, y, epochs=1, schedule_epochs=epochs, progress=False, **fit_kwargs)
            except DivergenceError:
                ok, distance = False, np.inf
                break
            test = model.evaluate(X_test, y_test)
            probe = dict(record, numba={"train_loss": history.loss[-1], "test_accuracy": test["accuracy"]})
            probe[f"max_abs_weight_diff_from_{REFERENCE}"] = dict(
                record[f"max_abs_weight_diff_from_{REFERENCE}"],
                numba=_distance(model.params_.astype(np.float64), params))
            ok &= within(probe, tolerance) and _stopped_together({**stopped, "numba": model.run_.stopped})
            if record is records[first]:
                distance = _distance(model.params_.astype(np.float64), numba_params[first])
            elif not ok and not amplified:  # (its distance is wanted only where the NumPy run says chaos)
                break
        probes.append(bool(ok))
        parted.append(distance)
        if ok or (amplified and distance >= gap / SCATTER_FACTOR):  # (measured wherever amplified)
            break
    return probes, parted


def _compiled_float64(make_model, start, records, reference_params, stops, X, y, X_test, y_test, epochs, fit_kwargs):
    """The compiled run in float64 from ``start`` (cast), each epoch up to the first out of tolerance
    (float32's) side by side with the float64 reference run (``reference_params``, ``records``' REFERENCE
    entries) as compare --dtype float64 judges it. A dict of ``max_abs_weight_diff`` and
    ``within_tolerance`` (TOLERANCES[REFERENCE]) per epoch; ``rounding_spread`` (where that epoch is out
    and the gap at least 1/FLOAT64_FACTOR of the float32 one: the NumPy float64 run from ``start`` cast
    and nudged 1 float64 ulp up, its max|W - W'| from the reference after each epoch; else None);
    ``nudged_spreads`` (then, at that epoch, the spreads of the runs from the nudged starts tried in
    turn, as ``_nudged_spreads``; else None); ``fault`` (out of tolerance at that epoch, at least
    1/FLOAT64_FACTOR of the float32 gap and more than CHAOS_FACTOR times each of those spreads; a run
    that diverges is inf apart)."""
    first, gap = first_gap(records)

    def in_float64(backend):
        model = make_model(backend)
        model.dtype = REFERENCE
        return model

    model = in_float64("numba")
    model._initialize(symmetry_warning=False)
    model.params_[...] = start.astype(REFERENCE)  # (in place: the model's own aligned array)
    diffs, oks = [], []
    for record, params, stopped in zip(records[: first + 1], reference_params, stops):
        try:
            history = model.partial_fit(X, y, epochs=1, schedule_epochs=epochs, progress=False, **fit_kwargs)
        except DivergenceError:
            diffs.append(np.inf)
            oks.append(False)
            break
        test = model.evaluate(X_test, y_test)
        side_by_side = {"numba": {"train_loss": history.loss[-1], "test_accuracy": test["accuracy"]},
                        "numpy": record[REFERENCE], "max_abs_weight": record["max_abs_weight"],
                        "max_abs_weight_diff": _distance(model.params_, params)}
        diffs.append(side_by_side["max_abs_weight_diff"])
        oks.append(within(side_by_side, TOLERANCES[REFERENCE])
                   and model.run_.stopped == stopped[REFERENCE])
    spread, spreads, fault = None, None, False
    if len(oks) == first + 1 and not oks[-1] and diffs[-1] >= gap / FLOAT64_FACTOR:
        start64 = start.astype(REFERENCE)
        spread = _rounding_spread(in_float64, start64, reference_params[: first + 1], X, y, epochs, fit_kwargs)
        # one nudged run's spread is one draw (audit 74): the other nudged starts in turn before a fault
        spreads = _nudged_spreads(in_float64, start64, first, diffs[-1], reference_params, spread, X, y, epochs,
                                  fit_kwargs)
        fault = not any(distance * CHAOS_FACTOR >= diffs[-1] for distance in spreads)
    elif len(oks) < first + 1:  # diverged before the epoch the float32 runs part at, the float64 reference did not
        spread = _rounding_spread(in_float64, start.astype(REFERENCE), reference_params[: first + 1], X, y, epochs,
                                  fit_kwargs)
        fault = bool(np.isfinite(spread[first]))
    return {"max_abs_weight_diff": diffs, "within_tolerance": oks, "rounding_spread": spread, "nudged_spreads": spreads,
            "fault": fault}


def _distance(a, b):
    return float(np.max(np.abs(a - b)))


def _stopped_together(stopped):
    """The compiled run stopped where the NumPy run did; with a float64 reference, where that
    did, or apart from it no more than the float32 reference run is."""
    if REFERENCE not in stopped:
        return stopped["numba"] == stopped["numpy"]
    return stopped["numba"] == stopped[REFERENCE] or stopped["numpy"] != stopped[REFERENCE]


def within(record, tolerance):
    """The epoch's record within ``tolerance``: the backends side by side (float64), or each
    one's distance from the float64 reference (float32): the compiled run's within the floor, or
    within ``rounding_factor`` times the float32 NumPy run's."""
    if REFERENCE not in record:
        a, b = record["numba"], record["numpy"]
        weights_ok = record["max_abs_weight_diff"] <= tolerance["weights_rtol"] * record["max_abs_weight"]
        loss_ok = abs(a["train_loss"] - b["train_loss"]) <= tolerance["loss_rtol"] * abs(b["train_loss"])
        accuracy_ok = True
        if a["test_accuracy"] is not None:
            accuracy_ok = abs(a["test_accuracy"] - b["test_accuracy"]) <= tolerance["accuracy_atol"]
        return bool(weights_ok and loss_ok and accuracy_ok)
    factor = tolerance["rounding_factor"]
    ref = record[REFERENCE]

    def close(distance, floor):
        return distance("numba") <= max(floor, factor * distance("numpy"))

    weights = record[f"max_abs_weight_diff_from_{REFERENCE}"]
    ok = close(weights.get, tolerance["weights_rtol"] * record["max_abs_weight"])
    ok &= close(lambda name: abs(record[name]["train_loss"] - ref["train_loss"]),
                tolerance["loss_rtol"] * abs(ref["train_loss"]))
    if ref["test_accuracy"] is not None:
        ok &= close(lambda name: abs(record[name]["test_accuracy"] - ref["test_accuracy"]), tolerance["accuracy_atol"])
    return bool(ok)
