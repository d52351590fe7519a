"""What a run's numbers mean, in words: one verdict sentence per recipe, computed from the
same metrics dict that goes to metrics.json, and a glossary of the metric names.

Differences are in percentage points ("points") of accuracy, as the papers report them.
"""

from __future__ import annotations


def percent(value: float) -> str:
    return f"{100 * value:.1f} %"


def points(difference: float) -> str:
    """|difference| in percentage points, one decimal: 0.153 → "15.3 points"."""
    shown = f"{abs(100 * difference):.1f}"
    return f"{shown} point" + ("" if shown == "1.0" else "s")


def _compare(difference: float, better: str, worse: str, same: str = "matches") -> str:
    """'beats it by 1.2 points' / 'trails it by …' / 'matches it', by sign at 0.05 points
    (one image in 2000: below what a test set of that size can tell apart)."""
    if abs(100 * difference) < 0.05:
        return same
    return f"{better if difference > 0 else worse} by {points(difference)}"


def _supervised(m: dict) -> str:
    held = "" if m.get("warning_test_in_train") else "held-back "  # not when it trained on them
    return (f"The model classifies {percent(m['test_acc'])} of the {m['test_images']:,} "
            f"{held}test images correctly ({m['params']:,} parameters, "
            f"{m['steps']:,} steps).")


def _consistency(m: dict) -> str:
    corrupt = m["student_corrupt_acc"] - m["teacher_corrupt_acc"]
    clean = m["student_clean_acc"] - m["teacher_clean_acc"]
    clean_part = ("and matches it on clean images" if abs(100 * clean) < 0.05 else
                  f"and {'gains' if clean > 0 else 'loses'} {points(clean)} on clean images")
    return (f"Under corruption the student {_compare(corrupt, 'beats its teacher', 'trails its teacher', 'matches its teacher')} "
            f"({percent(m['teacher_corrupt_acc'])} → {percent(m['student_corrupt_acc'])}) "
            f"{clean_part} ({percent(m['teacher_clean_acc'])} → "
            f"{percent(m['student_clean_acc'])}).")


def _relation(difference: float, other: str) -> str:
    """'1.6 points below its teacher' / '0.4 points above …' / 'level with …'."""
    if abs(100 * difference) < 0.05:
        return f"level with {other}"
    return f"{points(difference)} {'above' if difference > 0 else 'below'} {other}"


def _distill(m: dict) -> str:
    ratio = m["teacher_params"] / max(m["student_params"], 1)
    size = (f"{ratio:.1f}× fewer than its teacher" if ratio >= 1.05 else
            f"{1 / ratio:.1f}× more than its teacher" if ratio <= 1 / 1.05 else
            "as many as its teacher")
    text = (f"The distilled student ({m['student_params']:,} parameters, {size}) classifies "
            f"{percent(m['student_acc'])} correctly: "
            + _relation(m["student_acc"] - m["teacher_acc"],
                        f"its teacher ({percent(m['teacher_acc'])})"))
    partial = m.get("labeled_images", m.get("train_images")) != m.get("train_images")
    if "student_labels_only_acc" in m:
        text += " and " + _relation(
            m["student_acc"] - m["student_labels_only_acc"],
            f"the same student trained on the labels alone "
            f"({percent(m['student_labels_only_acc'])})")
    if partial:
        text += (f", with labels for {m['labeled_images']:,} of its {m['train_images']:,} "
                 "training images: the teacher labels the rest")
    return text + "."


def _adamatch(m: dict) -> str:
    where = {"ssl": "On the test images", "uda": "On the target domain",
             "ssda": "On the target domain"}.get(m.get("mode"), "On the test images")
    text = f"{where} AdaMatch classifies {percent(m['target_acc'])} correctly"
    if "source_only_target_acc" in m:
        gain = m["target_acc"] - m["source_only_target_acc"]
        alone = "labeled images" if m.get("mode") == "ssl" else "labeled source"
        text += (f", against {percent(m['source_only_target_acc'])} for the same model "
                 f"trained on the {alone} alone: "
                 f"{'+' if gain >= 0 else '−'}{points(gain)}")
    return text + "."


def _robustness(m: dict) -> str:
    key = "corrupt_acc" if "corrupt_acc" in m else "corrupt_acc_all"
    kept = m[key] / m["clean_acc"] if m["clean_acc"] else 0.0
    return (f"The model classifies {percent(m['clean_acc'])} of the {m['images']:,} clean "
            f"images and {percent(m[key])} of their corrupted versions: under corruption it "
            f"keeps {100 * kept:.0f} % of its clean accuracy.")


_VERDICTS = {"supervised": _supervised, "consistency": _consistency, "distill": _distill,
             "adamatch": _adamatch, "robustness": _robustness}


def verdict(metrics: dict) -> str:
    """One sentence on what the run shows, from its metrics ("" for an unknown recipe),
    led by what makes its numbers doubtful, where something does."""
    make = _VERDICTS.get(metrics.get("recipe"))
    sentence = make(metrics) if make else ""
    caveats = []
    if metrics.get("warning_test_in_train"):
        caveats.append(f"{metrics['warning_test_in_train']} test images are also training "
                       "images, so the test numbers overstate it")
    if metrics.get("warning_data_changed_on_resume"):
        caveats.append(f"its data ({metrics['warning_data_changed_on_resume']}) changed while "
                       "it was interrupted, so it trained on two data sets")
    if sentence and caveats:
        return "Doubtful: " + "; ".join(caveats) + ". " + sentence
    return sentence


GLOSSARY = {
    "test_acc": "fraction of the test images the model classifies correctly (top-1)",
    "val_acc": "top-1 accuracy on the validation images held out of the training set "
               "(used to watch training, not to pick a result)",
    "teacher_clean_acc": "the teacher's top-1 accuracy on the uncorrupted test images",
    "student_clean_acc": "the student's top-1 accuracy on the uncorrupted test images",
    "clean_acc": "top-1 accuracy on the uncorrupted images",
    "teacher_corrupt_acc": "the teacher's mean accuracy over the 15 CIFAR-10-C benchmark "
                           "corruptions × 5 severities (the number RobustBench reports)",
    "student_corrupt_acc": "the student's mean accuracy over the 15 benchmark corruptions "
                           "× 5 severities",
    "corrupt_acc": "mean accuracy over the 15 CIFAR-10-C benchmark corruptions × 5 severities",
    "teacher_corrupt_acc_all": "the same mean over all 19 corruptions (the 15 plus "
                               "gaussian_blur, spatter, speckle_noise and saturate)",
    "student_corrupt_acc_all": "the same mean over all 19 corruptions",
    "corrupt_acc_all": "the same mean over all 19 corruptions (the 15 benchmark ones plus "
                       "gaussian_blur, spatter, speckle_noise and saturate)",
    "corruption_images": "how many test images each corruption cell was measured on",
    "teacher_acc": "the teacher's top-1 accuracy on the test images",
    "student_acc": "the distilled student's top-1 accuracy on the test images",
    "student_labels_only_acc": "the same student architecture, same steps, trained on the "
                               "labels alone: what distillation has to beat",
    "student_teacher_agreement": "fraction of test images where student and teacher predict "
                                 "the same class (right or wrong)",
    "student_teacher_kl": "mean KL(teacher ‖ student) on the test images, in nats: 0 when "
                          "the student reproduces the teacher's probabilities",
    "target_acc": "top-1 accuracy on the target-domain test images (in UDA these are the "
                  "unlabeled target images themselves: their labels are never trained on)",
    "source_acc": "top-1 accuracy on held-out labeled source images",
    "source_only_target_acc": "the same model trained on the labeled images alone, measured "
                              "on the same target test images: what AdaMatch has to beat",
    "steps": "optimizer steps of the main training stage",
    "teacher_steps": "optimizer steps spent training the teacher in this run (0: a "
                     "finished teacher was loaded)",
    "params": "trainable parameters of the model",
    "teacher_params": "trainable parameters of the teacher",
    "student_params": "trainable parameters of the student",
    "labeled_images": "training images whose labels the student and its labels-only twin "
                      "may use (labels_per_class); the student sees the others through the "
                      "teacher",
    "train_images": "images the model trains on (the validation images held out)",
    "seconds": "wall-clock time of the whole run",
    "skipped_images": "files in the image folders that did not decode (corrupt, truncated, "
                      "empty) and were left out; the log names them (--strict refuses them)",
    "skipped_files": "the first of the skipped files (the log names them all)",
    "unscored_images": "test or validation images that could not be read when they were "
                       "scored (deleted or damaged during the run): left out of every "
                       "accuracy, from the hits and from the count",
    "unscored_files": "the first of the unscored files",
    "warning_test_in_train": "test images that are also training images (the same file, or "
                             "the same pixels): the test accuracy then measures memorisation",
    "warning_data_changed_on_resume": "data sources that changed while the run was "
                                      "interrupted and that it resumed on anyway "
                                      "(--resume-anyway): the model trained on both versions",
    "unread_settings": "config keys set away from their defaults that nothing in this run "
                       "read: with the rest of the config they change nothing",
    "images": "how many images were evaluated",
}


def glossary(keys) -> dict[str, str]:
    """The glossary entries of the metric names in `keys`, in their order."""
    return {k: GLOSSARY[k] for k in keys if k in GLOSSARY}
