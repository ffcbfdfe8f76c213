"""Panoptic quality (PQ, SQ, RQ for all / things / stuff and per class, by the COCO rules) of COCO-format panoptic
predictions (a JSON with ``annotations`` and a folder of PNGs, e.g. ``hyctas predict``'s PanopticWriter output, or
any other model's) against COCO-format ground truth (COCO panoptic, or Cityscapes converted by cityscapesscripts'
createPanopticImgs)."""
from __future__ import annotations

from jsonargparse import ArgumentParser, Namespace

PROG = "hyctas panoptic-eval"


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--gt-json", required=True, help="ground-truth JSON (annotations and categories)")
    parser.add_argument("--gt-dir", required=True, help="folder of the ground-truth PNGs")
    parser.add_argument("--pred-json", required=True, help="prediction JSON (annotations)")
    parser.add_argument("--pred-dir", required=True, help="folder of the predicted PNGs")
    parser.add_argument("--out", default=None, help="write the scores as JSON: All/Things/Stuff and per_class")
    parser.add_argument("--device", default="cpu", help="where the counting runs (cpu or cuda)")


def run(args: Namespace) -> int:
    from hyctas_lightning.evaluation.panoptic_files import evaluate_panoptic_files, write_scores
    from hyctas_lightning.evaluation.panoptic_quality import format_pq_table

    scores, categories = evaluate_panoptic_files(args.gt_json, args.gt_dir, args.pred_json, args.pred_dir,
                                                 args.device)
    print(format_pq_table(scores, [str(c.get("name", c["id"])) for c in categories]))
    if args.out:
        write_scores(scores, categories, args.out)
        print(f"scores written to {args.out}")
    return 0
