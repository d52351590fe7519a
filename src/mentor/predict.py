"""`mentor predict`: a trained classifier's class for each image of a data source, a folder
of images or a list of image files, as CSV rows."""

from __future__ import annotations

import csv
import io

import numpy as np

from mentor.data.files import scored_mask
from mentor.data.sources import load_images
from mentor.errors import MentorError
from mentor.inference import predict
from mentor.overlap import record_overlap, run_class_names


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def predict_images(model, specs: list[str], *, batch_size: int = 256, run=None):
    """(CSV text, summary dict) of `model`'s predictions on the images `specs` name. With
    `run` (the run the model comes from), class names come from its training data, and the
    images it trained on are counted (summary["overlap_images"], and a warning)."""
    _, height, width, channels = model.input_shape
    if not height or height != width or not channels:
        raise MentorError(f"the model takes images of shape {model.input_shape[1:]}; mentor "
                          "predicts with square models of a fixed size (as mentor trains).")
    x, names, y, source_names = load_images(specs, height, channels)
    out = np.asarray(predict(model, x, batch_size), "float64")
    # A model that ends in a softmax (keras.applications' default) gives probabilities
    # already: a second softmax would flatten them toward 1/classes.
    given = out.size and out.min() >= 0.0 and np.allclose(out.sum(-1), 1.0, atol=1e-3)
    probs = out if given else softmax(out)
    classes = probs.shape[-1]
    if y is not None and int(y.max()) >= classes:
        raise MentorError(f"the model predicts {classes} classes but {specs[0]} has labels up "
                          f"to {int(y.max())}; give data of the model's classes.")
    class_names = run_class_names(run) if run is not None else None
    if class_names is not None and len(class_names) != classes:
        class_names = None
    names_of = class_names or (source_names if source_names and len(source_names) == classes
                               else None) or [str(i) for i in range(classes)]
    predicted = probs.argmax(-1)
    # A file that could not be read stood in as its neighbour: it gets no row, no score.
    scored = scored_mask(x, specs[0])
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["image", "predicted", "class_name", "probability"]
                    + (["label"] if y is not None else []))
    for i, (name, p) in enumerate(zip(names, predicted)):
        if scored[i]:
            writer.writerow([name, int(p), names_of[p], f"{probs[i, p]:.6f}"]
                            + ([int(y[i])] if y is not None else []))
    summary = {"images": int(scored.sum())}
    if not scored.all():
        summary["unreadable_images"] = int((~scored).sum())
    record_overlap(summary, run, x)
    if y is not None:
        summary["accuracy"] = float(np.mean((predicted == y)[scored]))
    return text.getvalue(), summary
