"""Sample quality without the internet: a Fréchet distance in the feature space of a small
classifier trained here (``fd_classifier``), the classifier's label entropy and class coverage.

FID (Heusel et al. 2017) compares Gaussians fitted to Inception-v3 features of real and
generated images. Inception weights cannot be downloaded here, and Inception features
suit natural images, not 28×28 digits; so tfvae trains a small convolutional classifier
once per dataset on its real training split (grey levels), caches it under the run root
(``<root>/.classifiers/<dataset>/``, with its test accuracy), and uses its 128-unit
penultimate layer as the feature space. The number is a Fréchet distance like FID's, in
a different feature space: comparable between runs of one dataset, not with published FIDs.

Fréchet distance between N(μ1, Σ1) and N(μ2, Σ2) (Dowson & Landau 1982; Heusel et al.
2017, eq. 6): ‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^{1/2}).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .config import atomic_write_text, json_text
from .errors import TfvaeError

FEATURES = 128
CLASSIFIER_EPOCHS = 3
COVERAGE_SHARE = 0.01  # a class is covered when ≥ 1% of the samples are classified as it


def frechet_distance(features_a, features_b) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [N, F] and [M, F].

    Returns:
        float ≥ 0 (squared feature units); 0 for identical sets.

    Raises:
        ValueError: fewer than 2 rows in a set, or different feature sizes.
    """
    from scipy import linalg

    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise ValueError(f"frechet_distance needs two [N, F] arrays with N >= 2, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(cov_a @ cov_b)
    if np.iscomplexobj(covmean):
        covmean = covmean.real  # rounding leaves a tiny imaginary part
    value = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean))
    return max(value, 0.0)


def build_classifier(image_shape, num_classes: int):
    """Small convnet: images [B, H, W, C] -> logits [B, num_classes]; layer ``features``
    (128 ReLU units) is the feature space."""
    import keras
    from keras import layers

    inputs = keras.Input(tuple(image_shape), name="images")
    h = layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    h = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(h)
    h = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(h)
    h = layers.Flatten()(h)
    h = layers.Dropout(0.3)(h)
    features = layers.Dense(FEATURES, activation="relu", name="features")(h)
    logits = layers.Dense(num_classes, name="logits")(layers.Dropout(0.3)(features))
    return keras.Model(inputs, logits, name="classifier")


class FeatureClassifier:
    """The cached classifier of one dataset: ``features``, ``probabilities``, ``info``.

    Attributes:
        info: dict with ``dataset``, ``test_accuracy`` (fraction), ``epochs``, ``seconds``.
    """

    def __init__(self, model, info: dict):
        import keras

        self.model = model
        self.info = info
        self._both = keras.Model(model.input, [model.get_layer("features").output, model.output])

    def outputs(self, images, batch_size: int = 1000):
        """(features float64 [N, 128], class probabilities float64 [N, C]) for images [N, H, W, C] in [0, 1]."""
        import tensorflow as tf

        feats, probs = [], []
        for i in range(0, len(images), batch_size):
            f, logits = self._both(tf.constant(np.asarray(images[i:i + batch_size], np.float32)), training=False)
            feats.append(f.numpy())
            probs.append(tf.nn.softmax(logits).numpy())
        return np.concatenate(feats).astype(np.float64), np.concatenate(probs).astype(np.float64)


def classifier_folder(root, dataset: str) -> Path:
    """<root>/.classifiers/<dataset>."""
    return Path(root) / ".classifiers" / dataset


def get_classifier(data, dataset: str, root, seed: int = 0, say=print) -> FeatureClassifier:
    """Load the dataset's cached classifier, or train it on ``data.train`` (grey levels,
    labels) and record its accuracy on ``data.test``.

    Args:
        data: a :class:`tfvae.data.ImageData` with train and test labels.
        root: the run root (the cache lives in ``<root>/.classifiers/<dataset>``).

    Raises:
        TfvaeError: the dataset has no labels or no test split.
    """
    import keras

    folder = classifier_folder(root, dataset)
    path, info_path = folder / "classifier.keras", folder / "info.json"
    if path.is_file() and info_path.is_file():
        return FeatureClassifier(keras.models.load_model(path), json.loads(info_path.read_text()))
    if data.train_labels is None or data.test is None or data.test_labels is None:
        raise TfvaeError(f"the sample-quality classifier needs labelled train and test splits; {dataset} has none")
    say(f"training the feature classifier for {dataset} (once; cached in {folder})")
    keras.utils.set_random_seed(seed)
    num_classes = len(data.class_names)
    model = build_classifier(data.image_shape, num_classes)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(data.train.astype(np.float32) / 255.0, data.train_labels, batch_size=128, epochs=CLASSIFIER_EPOCHS,
              verbose=0)
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(data.test.astype(np.float32) / 255.0, data.test_labels, batch_size=1000, verbose=0)
    info = {"dataset": dataset, "test_accuracy": float(accuracy), "epochs": CLASSIFIER_EPOCHS, "seconds": seconds,
            "train_images": int(len(data.train)), "test_images": int(len(data.test)),
            "input": "grey levels in [0, 1]", "features": f"penultimate dense layer, {FEATURES} ReLU units"}
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".classifier.tmp.keras"
    model.save(tmp)
    tmp.replace(path)
    atomic_write_text(info_path, json_text(info))
    return FeatureClassifier(model, info)


def sample_quality(classifier: FeatureClassifier, samples, reference) -> dict:
    """Fréchet distance of ``samples`` to ``reference`` (both [N, H, W, C] in [0, 1]) in the
    classifier's feature space, with the samples' label statistics.

    Returns:
        ``fd_classifier`` (float), ``label_entropy`` (mean entropy of the predicted class
        distribution of each sample, nats; low = confidently recognisable),
        ``class_coverage`` (fraction of classes that are the prediction for at least 1% of
        the samples), ``label_histogram`` (fraction per class).
    """
    f_s, p_s = classifier.outputs(samples)
    f_r, _ = classifier.outputs(reference)
    entropy = -np.sum(p_s * np.log(np.clip(p_s, 1e-12, 1.0)), axis=1)
    hist = np.bincount(np.argmax(p_s, axis=1), minlength=p_s.shape[1]) / len(p_s)
    return {
        "fd_classifier": frechet_distance(f_s, f_r),
        "label_entropy": float(np.mean(entropy)),
        "class_coverage": float(np.mean(hist >= COVERAGE_SHARE)),
        "label_histogram": [float(v) for v in hist],
    }
