"""Every picture tfadvq draws: one submodule per subject, all re-exported here.

The CLI's ``--plots DIR``, the recipes and the notebooks call these same
functions, so a figure in a notebook is the figure the CLI writes.  Figures
are built on :class:`matplotlib.figure.Figure` (no pyplot), so importing this
package chooses no backend; notebooks display the returned PNG paths inline.

``det``      detection error trade-off curves (one system, or several compared)
``weights``  weight histograms with the value table marked (float vs quantized)
``binary``   weight distributions before/after 1-bit quantization, one panel per method
``mixed``    sensitivity and bits per tensor, Hutchinson convergence, EER vs size with the Pareto front
"""
from tfadvq.plots.binary import plot_binary_weights
from tfadvq.plots.det import plot_det, plot_dets
from tfadvq.plots.mixed import plot_convergence, plot_eer_vs_size, plot_sensitivity
from tfadvq.plots.weights import plot_model, plot_tensor

__all__ = ["plot_binary_weights", "plot_convergence", "plot_det", "plot_dets", "plot_eer_vs_size", "plot_model",
           "plot_sensitivity", "plot_tensor"]
