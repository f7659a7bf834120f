"""A trained version's validation in plain lines: the train_model command's output."""

from __future__ import annotations

import json

from predictions.models import ModelVersion


def report_lines(version: ModelVersion) -> list[str]:
    lines = [f"model:         {version.model.name} v{version.number} ({version.get_state_display()})"]
    if version.message:
        lines.append(f"note:          {version.message}")
    if not version.metrics:
        return lines
    m, counts = version.metrics, version.counts
    train, validation = counts["training"], counts["validation"]
    lines += [
        f"target:        {version.target}, {version.horizon_days}-day horizon, {version.algorithm}, "
        f"{version.holdout} holdout" + (f" {json.dumps(version.holdout_rule)}" if version.holdout_rule else ""),
        f"cutoffs:       train {version.train_cutoff:%Y-%m-%d}, validate {version.validation_cutoff:%Y-%m-%d}",
        f"training:      {train['contacts']:,} contacts, {train['positives']:,} positives, "
        f"{train['negatives']:,} negatives",
        f"validation:    {validation['contacts']:,} contacts, {validation['positives']:,} positives, "
        f"{validation['negatives']:,} negatives",
        f"features:      {len(version.features['columns'])} columns",
        f"AUC:           {m['auc']:.3f} (95% bootstrap interval {m['auc_low']:.3f}-{m['auc_high']:.3f}), {m['band']}",
        f"base rate:     {m['base_rate']:.2%}",
        "precision:     " + ", ".join(f"top {k}% {v:.1%}" for k, v in m["precision_at"].items()),
        "lift:          " + " ".join(f"{row['lift']:.2f}" for row in m["lift"]) + " (deciles, highest scores first)",
        f"brier score:   {m['brier']:.4f}",
    ]
    for flag in version.leakage:
        lines.append(f"leak flagged:  {flag['feature']}: {flag['reason']} (left out)")
    lines.append(f"duration:      {(version.duration_ms or 0) / 1000:.1f} s")
    return lines
