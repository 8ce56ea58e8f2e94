"""Input bounds (low, high) for the z^B first-layer rule, for common preprocessings.

The z^B rule needs the lowest and highest value each input can take *after* the
preprocessing the model expects (pass them as ``input_layer_rule=(low, high)``).
"""

from __future__ import annotations

import numpy as np

_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
#: ImageNet mean pixel (B, G, R) that Keras' "caffe" preprocessing subtracts.
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)

#: name -> (low, high) as scalars or per-channel arrays, with a description.
PREPROCESSINGS: dict[str, tuple[object, object, str]] = {
    "raw": (0.0, 255.0, "pixel values 0..255 unchanged"),
    "unit": (0.0, 1.0, "x / 255"),
    "symmetric": (-1.0, 1.0, "x / 127.5 - 1 (Keras 'tf' mode: MobileNet, Inception, Xception)"),
    "torch": ((0.0 - _IMAGENET_MEAN) / _IMAGENET_STD, (1.0 - _IMAGENET_MEAN) / _IMAGENET_STD,
              "(x / 255 - mean) / std, ImageNet mean/std per RGB channel (torchvision)"),
    "caffe": (-CAFFE_MEAN_BGR, 255.0 - CAFFE_MEAN_BGR,
              "RGB→BGR, minus the ImageNet BGR mean (Keras 'caffe' mode: VGG, ResNet50)"),
    "effnet_lite": ((0.0 - 127.0) / 128.0, (255.0 - 127.0) / 128.0,
                    "(x - 127) / 128 (EfficientNet-Lite, tf_clrp.zoo)"),
}


def input_bounds(preprocessing: str) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest preprocessed input values.

    Args:
        preprocessing: One of ``PREPROCESSINGS`` ("raw", "unit", "symmetric", "torch",
            "caffe", "effnet_lite").

    Returns:
        (low, high) as float32 arrays (scalars or one value per channel).

    Raises:
        ValueError: unknown preprocessing (the message lists the known ones).
    """
    if preprocessing not in PREPROCESSINGS:
        raise ValueError(
            f"unknown preprocessing {preprocessing!r}; known: {', '.join(PREPROCESSINGS)}"
        )
    low, high, _ = PREPROCESSINGS[preprocessing]
    return np.asarray(low, np.float32), np.asarray(high, np.float32)
