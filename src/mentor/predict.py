"""`mentor predict`: a trained classifier's class for each image of a data source, a folder
of images or a list of image files, as CSV rows."""

from __future__ import annotations

import csv
import io
import pathlib

import numpy as np

from mentor.errors import MentorError


def _image_files(specs: list[str]) -> list[pathlib.Path] | None:
    """The image files named by `specs` (files, or one folder of images without class
    sub-folders), or None when `specs` is one data source spec."""
    from mentor.data.folders import IMAGE_EXTENSIONS

    paths = [pathlib.Path(s) for s in specs]
    if len(paths) == 1 and paths[0].is_dir():
        folder = paths[0]
        if any(p.is_dir() and not p.name.startswith(".") for p in folder.iterdir()):
            return None  # class sub-folders: a labelled folder source
        files = sorted(p for p in folder.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise MentorError(f"{folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}); give "
                              "a folder of images, image files or a data source "
                              "(`mentor sources`).")
        return files
    if len(paths) == 1 and paths[0].suffix.lower() not in IMAGE_EXTENSIONS:
        return None
    for path in paths:
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise MentorError(f"{path} is not an image file ({', '.join(IMAGE_EXTENSIONS)}); "
                              "give image files, one folder of images, or one data source.")
        if not path.is_file():
            raise MentorError(f"no such image file: {path}")
    return paths


def load_images(specs: list[str], size: int, channels: int):
    """(uint8 images size×size×channels, their names for the CSV, labels or None, the
    source's class names or None). Images are resized-and-padded and converted as a run's
    data is, so a model sees what it saw in training."""
    from mentor.data.files import decode_image
    from mentor.data.imageset import ImageSet
    from mentor.data.prepare import prepare
    from mentor.data.sources import load_source

    files = _image_files(specs)
    if files is None:
        data = prepare(load_source(specs[0], image_size=size), size, channels)
        return data.x, [str(i) for i in range(len(data))], data.y, data.class_names
    # one class id per file only to pass ImageSet's checks; the labels are not used
    images = np.stack([prepare(ImageSet(decode_image(f, size)[None], [0], ["?"], str(f)), size,
                               channels).x[0] for f in files])
    return images, [str(f) for f in files], None, None


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def predict_images(model, specs: list[str], *, batch_size: int = 256, run=None):
    """(CSV text, summary dict) of `model`'s predictions on the images `specs` name. With
    `run` (the run the model comes from), class names come from its training data, and the
    images it trained on are counted (summary["overlap_images"], and a warning)."""
    from mentor.data.files import scored_mask
    from mentor.inference import predict
    from mentor.overlap import record_overlap, run_class_names

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
