"""The packaged recipe stage types (:mod:`tfadvq.recipe`); importing this package registers them.

``corpus``, ``train``, ``evaluate``, ``verify`` (data and FP32 models),
``quantize``, ``finetune`` (KMQAT), ``mixed`` (mixed precision from Hessian sensitivity), ``msft``
(multi-stage fine-tuning), ``convert``, ``calibrate``,
``device_verify`` (the device: LUT ``.tflite`` under the TFLM interpreter), ``firmware_session`` (the
real firmware on QEMU; needs a TFLM built outside the project).
"""
from tfadvq.stages import data, device, firmware, mixed, modelling, msft, quantization  # noqa: F401
