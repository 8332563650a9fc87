#!/usr/bin/env python
"""The judge: a small MLP digit classifier on the 8×8 view of an image, with a reject option, trained on
the training part of the digits split and saved as plain arrays (judge.npz, no pickle).

    python benchmarks/digits/judge.py        # trains and writes benchmarks/digits/judge.npz and judge.json (seconds)

Reject option, in two parts. The MLP has an eleventh class, "not a digit", trained on synthetic garbage
(uniform noise, smoothed noise, flat images, digits with their pixels shuffled), because an MLP trained on
digits alone labels pure noise confidently. And an image counts as digit d only when d is the judge's top
class and its probability reaches the threshold.
The threshold is the 2nd percentile of the top probability over the first half of the held-out real digits
(the calibration half), so about 98% of real digits are accepted; accuracy is reported on the other half.
Its hidden layer (64 ReLU units) is the feature space of the Fréchet distance.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from benchmarks.digits.data import judge_input, load_split, real_as_images  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_JUDGE = os.path.join(HERE, "judge.npz")
ACCEPTED_REAL_FRACTION = 0.98
HIDDEN_UNITS = 64
NOT_A_DIGIT = 10


class Judge:
    """A one-hidden-layer MLP (numpy forward pass) with a confidence threshold."""

    def __init__(self, hidden_weight, hidden_bias, output_weight, output_bias, threshold: float):
        self.hidden_weight, self.hidden_bias = hidden_weight, hidden_bias
        self.output_weight, self.output_bias = output_weight, output_bias
        self.threshold = float(threshold)

    @classmethod
    def load(cls, path: str = DEFAULT_JUDGE) -> "Judge":
        with np.load(path, allow_pickle=False) as arrays:
            return cls(
                *(arrays[k] for k in ("hidden_weight", "hidden_bias", "output_weight", "output_bias")),
                float(arrays["threshold"]),
            )

    def save(self, path: str) -> None:
        np.savez(
            path,
            hidden_weight=self.hidden_weight.astype(np.float32),
            hidden_bias=self.hidden_bias.astype(np.float32),
            output_weight=self.output_weight.astype(np.float32),
            output_bias=self.output_bias.astype(np.float32),
            threshold=np.float32(self.threshold),
        )

    def features(self, inputs: np.ndarray) -> np.ndarray:
        """Hidden-layer activations of [N, 64] judge inputs (data.judge_input)."""
        return np.maximum(inputs @ self.hidden_weight + self.hidden_bias, 0.0)

    def probabilities(self, inputs: np.ndarray) -> np.ndarray:
        logits = self.features(inputs) @ self.output_weight + self.output_bias
        logits = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def labels(self, inputs: np.ndarray) -> np.ndarray:
        """The digit each input is confidently judged to be, or -1 where the judge rejects it (top class
        "not a digit", or a top probability below the threshold)."""
        probabilities = self.probabilities(inputs)
        top = probabilities.argmax(axis=1)
        return np.where((probabilities.max(axis=1) >= self.threshold) & (top != NOT_A_DIGIT), top, -1)


def synthetic_garbage(digits: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """[count, 64] judge inputs that are no digit: uniform noise, smoothed noise, flat images and
    pixel-shuffled digits, a quarter each."""
    quarter = count // 4
    uniform = rng.random((quarter, 8, 8))
    smooth = rng.random((quarter, 10, 10))
    smooth = sum(smooth[:, i : i + 8, j : j + 8] for i in range(3) for j in range(3)) / 9
    smooth = (smooth - smooth.min(axis=(1, 2), keepdims=True)) / np.ptp(smooth, axis=(1, 2), keepdims=True)
    flat = np.ones((quarter, 8, 8)) * rng.random((quarter, 1, 1))
    shuffled = rng.permuted(digits[rng.integers(len(digits), size=count - 3 * quarter)].reshape(-1, 64), axis=1)
    return np.concatenate([uniform.reshape(-1, 64), smooth.reshape(-1, 64), flat.reshape(-1, 64), shuffled]).astype(
        np.float32
    )


def train_judge(seed: int = 0) -> tuple[Judge, dict]:
    """Fits the MLP on the training digits, picks the threshold on the calibration half of the held-out
    digits and measures it on the other half."""
    from sklearn.neural_network import MLPClassifier

    train_x, train_y, test_x, test_y = load_split()
    inputs = judge_input(real_as_images(train_x))
    held_out = judge_input(real_as_images(test_x))
    calibration = np.arange(len(held_out)) % 2 == 0
    rng = np.random.default_rng(seed)
    garbage = synthetic_garbage(inputs, len(inputs) // 2, rng)
    inputs = np.concatenate([inputs, garbage])
    train_y = np.concatenate([train_y, np.full(len(garbage), NOT_A_DIGIT)])
    classifier = MLPClassifier(
        hidden_layer_sizes=(HIDDEN_UNITS,), alpha=1e-3, max_iter=1000, random_state=seed, early_stopping=False
    )
    classifier.fit(inputs, train_y)
    weights, biases = classifier.coefs_, classifier.intercepts_
    judge = Judge(weights[0], biases[0], weights[1], biases[1], threshold=0.0)
    top = judge.probabilities(held_out[calibration])[:, :NOT_A_DIGIT].max(axis=1)
    judge.threshold = float(np.quantile(top, 1 - ACCEPTED_REAL_FRACTION))

    test_inputs, test_labels = held_out[~calibration], test_y[~calibration]
    plain = judge.probabilities(test_inputs)[:, :NOT_A_DIGIT].argmax(axis=1)
    confident = judge.labels(test_inputs)
    rng = np.random.default_rng(seed + 1)  # fresh garbage, not the training garbage
    noise = synthetic_garbage(held_out, 400, rng)
    report = {
        "train_images": int(len(inputs)),
        "calibration_images": int(calibration.sum()),
        "test_images": int(len(test_labels)),
        "threshold": round(judge.threshold, 4),
        "test_accuracy_without_reject": round(float((plain == test_labels).mean()), 4),
        "test_confident_accuracy": round(float((confident == test_labels).mean()), 4),
        "test_reject_fraction": round(float((confident == -1).mean()), 4),
        "test_confident_error": round(float(((confident != -1) & (confident != test_labels)).mean()), 4),
        "fresh_garbage_reject_fraction": round(float((judge.labels(noise) == -1).mean()), 4),
        "uniform_noise_reject_fraction": round(float((judge.labels(noise[:100]) == -1).mean()), 4),
        "blank_rejected": bool(judge.labels(np.zeros((1, 64), np.float32))[0] == -1),
    }
    return judge, report


if __name__ == "__main__":
    judge, report = train_judge()
    judge.save(DEFAULT_JUDGE)
    with open(os.path.join(HERE, "judge.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    print(json.dumps(report, indent=2))
