"""What a run's numbers mean, in words: the pieces a recipe's verdict sentence is made of
(each recipe writes its own, from the same metrics dict that goes to metrics.json), the
caveats that lead it, and the glossary of the metric names shared by several recipes.

Differences are in percentage points ("points") of accuracy, as the papers report them.
"""

from __future__ import annotations


def percent(value: float) -> str:
    return f"{100 * value:.1f} %"


def points(difference: float) -> str:
    """|difference| in percentage points, one decimal: 0.153 → "15.3 points"."""
    shown = f"{abs(100 * difference):.1f}"
    return f"{shown} point" + ("" if shown == "1.0" else "s")


def compare(difference: float, better: str, worse: str, same: str = "matches") -> str:
    """'beats it by 1.2 points' / 'trails it by …' / 'matches it', by sign at 0.05 points
    (one image in 2000: below what a test set of that size can tell apart)."""
    if abs(100 * difference) < 0.05:
        return same
    return f"{better if difference > 0 else worse} by {points(difference)}"


def relation(difference: float, other: str) -> str:
    """'1.6 points below its teacher' / '0.4 points above …' / 'level with …'."""
    if abs(100 * difference) < 0.05:
        return f"level with {other}"
    return f"{points(difference)} {'above' if difference > 0 else 'below'} {other}"


def with_caveats(metrics: dict, sentence: str) -> str:
    """A recipe's verdict sentence, led by what makes its numbers doubtful, where something
    does."""
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


# The metric names every recipe (or several) reports; a recipe's own are in its Recipe.
GLOSSARY = {
    "test_acc": "fraction of the test images the model classifies correctly (top-1)",
    "val_acc": "top-1 accuracy on the validation images held out of the training set "
               "(used to watch training, not to pick a result)",
    "clean_acc": "top-1 accuracy on the uncorrupted images",
    "corrupt_acc": "mean accuracy over the 15 CIFAR-10-C benchmark corruptions × 5 severities",
    "corrupt_acc_all": "the same mean over all 19 corruptions (the 15 benchmark ones plus "
                       "gaussian_blur, spatter, speckle_noise and saturate)",
    "corruption_images": "how many test images each corruption cell was measured on",
    "steps": "optimizer steps of the main training stage",
    "teacher_steps": "optimizer steps spent training the teacher in this run (0: a "
                     "finished teacher was loaded)",
    "params": "trainable parameters of the model",
    "teacher_params": "trainable parameters of the teacher",
    "student_params": "trainable parameters of the student",
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


def glossary(keys, terms=None) -> dict[str, str]:
    """The glossary entries of the metric names in `keys`, in their order: `terms` (a
    recipe's own) first, then the shared ones."""
    known = {**GLOSSARY, **(terms or {})}
    return {k: known[k] for k in keys if k in known}
