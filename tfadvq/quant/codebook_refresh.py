"""Keras callback that re-fits k-means codebooks during quantization-aware training.

With a fixed codebook the straight-through estimator lets the float shadow
weights drift away from the centroids they are rounded to; re-running k-means
on them every ``every_n_steps`` steps and at each epoch end lets the codebook
follow.  Each refit is warm-started from the previous codebook (numpy
:func:`tfadvq.quant.kmeans1d.fit`), so it is cheap and the centroids move smoothly.
"""
from __future__ import annotations

from tfadvq.compat import keras
from tfadvq.quant import quantizers as qz
from tfadvq.quant.api import quantized_weights


class CodebookRefresh(keras.callbacks.Callback):
    """Re-fit every :class:`~tfadvq.quant.quantizers.KMeansQuantizer` of ``quantized_model``.

    ``quantized_model`` defaults to the model being trained (or any quantized
    model nested in it, e.g. inside an AAM or distillation trainer).
    ``every_n_steps=0`` refreshes at epoch ends only.
    """

    def __init__(self, quantized_model: keras.Model | None = None, every_n_steps: int = 100,
                 at_epoch_end: bool = True):
        super().__init__()
        self.quantized_model = quantized_model
        self.every_n_steps = int(every_n_steps)
        self.at_epoch_end = at_epoch_end
        self.refreshes = 0
        self._steps = 0

    def _quantizers(self) -> list[qz.KMeansQuantizer]:
        roots = [self.quantized_model] if self.quantized_model is not None else [
            m for m in [self.model, *self.model.submodules] if isinstance(m, keras.Model)]
        return [q for root in roots for _, q in quantized_weights(root)
                if isinstance(q, qz.KMeansQuantizer)]

    def refresh(self) -> None:
        for quantizer in self._quantizers():
            quantizer.refit()
        self.refreshes += 1

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1
        if self.every_n_steps and self._steps % self.every_n_steps == 0:
            self.refresh()

    def on_epoch_end(self, epoch, logs=None):
        if self.at_epoch_end:
            self.refresh()
