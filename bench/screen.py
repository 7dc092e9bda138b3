"""Screen a training recipe for its membership signal before a matrix is built on it.

``python -m bench.screen --matrix X --seed S [--views 10,30] [--encoder NAME]`` trains (or
loads from the model cache) each encoder's original, retrain and first reference model of
seed ``S`` exactly as a run of matrix ``X`` would, then scores the calibrated attack
(``cMIA-AUC``) of the original and of the retrain at each number of audit views. One JSON
line per (encoder, views): the seconds each model took to train, both AUCs, and the seconds
the features of one model took. A recipe is worth a matrix only if the original's AUC clears
the noise (an AUC at 0.5 with n_f forget and n_t test images has a standard error of about
sqrt((1/n_f + 1/n_t) / 12)) while the retrain's stays near 0.5.

With ``--cell`` it also runs the whole seed-cell (every method and auditor of the matrix,
through the runner, models from the same cache) and reports its wall time: the cost of one
seed of the matrix.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.screen", description=__doc__.split("\n\n")[0])
    p.add_argument("--matrix", required=True, help="a shipped matrix name or a YAML path")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--views", default="", help="comma-separated audit view counts (default: the matrix's)")
    p.add_argument("--encoder", default="", help="only this encoder (its name), e.g. to run one per process")
    p.add_argument("--cache-dir", type=Path, default=Path("runs/cache"))
    p.add_argument("--data-root", type=Path, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cell", action="store_true", help="also run the whole seed-cell and time it")
    p.add_argument("--no-retrain", action="store_true",
                   help="train only the original and the reference (the original's AUC needs no retrain)")
    args = p.parse_args(argv)

    import torch

    from audits.calibrated_mia import calibrated_auc
    from bench.audit import AuditContext
    from bench.config import ConfigError, load_matrix, validate
    from bench.data import default_data_root, load_dataset
    from bench.runner import REFERENCE_SEED_STRIDE, CellRunner, run_cell

    torch.set_num_threads(args.threads)
    root = args.data_root or default_data_root()
    try:
        matrix = load_matrix(args.matrix)
        matrix.seeds = [args.seed]
        validate(matrix, root)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    fingerprints = {ds: load_dataset(ds, root).fingerprint for ds in matrix.datasets}
    views = [int(v) for v in args.views.split(",") if v] or [matrix.audit.views]
    for cell in matrix.cells(str(root), fingerprints):
        if args.encoder and cell.encoder != args.encoder:
            continue
        runner = CellRunner(cell, args.cache_dir)
        forgotten, retain = runner.split.after_request(0)
        secs = {}
        models = {}
        roles = [("original", runner.split.members, cell.seed), ("retrain", retain, cell.seed),
                 ("reference-0", retain, cell.seed + REFERENCE_SEED_STRIDE)]
        for role, idx, seed in roles[::2] if args.no_retrain else roles:
            models[role], secs[role] = runner.trained(idx, seed, role)
        for v in views:
            c = dataclasses.replace(cell, audit=dataclasses.replace(cell.audit, views=v))
            runner.cell = c
            runner._features.clear()
            aviews = runner.audit_views(forgotten, retain)
            t0 = time.perf_counter()
            feats = {role: runner.features(m, role, aviews, 0) for role, m in models.items()}
            feat_s = (time.perf_counter() - t0) / len(feats)
            ctx = AuditContext(original=feats["original"], retrain=feats.get("retrain", feats["reference-0"]),
                               references=[feats["reference-0"]], num_classes=runner.data.num_classes,
                               options=c.audit, seed=c.seed)
            print(json.dumps({
                "encoder": cell.encoder_label, "seed": cell.seed, "members": len(runner.split.members),
                "forget": len(forgotten), "test": len(runner.split.test), "views": v,
                "train": dataclasses.asdict(cell.train),
                "train_s": {k: round(s, 1) for k, s in secs.items()},
                "features_s_per_model": round(feat_s, 1),
                "original_cmia_auc": round(calibrated_auc("align_head", ctx.original, ctx.references, "forget"), 4),
                "retrain_cmia_auc": None if args.no_retrain else
                round(calibrated_auc("align_head", ctx.retrain, ctx.references, "forget"), 4),
            }), flush=True)
        if args.cell:
            t0 = time.perf_counter()
            result = run_cell(cell, args.cache_dir)
            print(json.dumps({"encoder": cell.encoder_label, "seed": cell.seed,
                              "cell_s_with_models_cached": round(time.perf_counter() - t0, 1),
                              "error": result.error,
                              "rows": {r.method: (r.status, round(float(r.info.get("seconds", 0.0)), 1))
                                       for r in result.rows}}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
