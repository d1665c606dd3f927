"""The shared view toolkit: plots (built, themed, titled one way), small widgets, the path-with-browse row."""

from .plots import TitleFitter, fitting_axis, font_plot, show_axes, static_plot, theme_plot
from .widgets import ElidedLabel, path_row, spin_box

__all__ = ["ElidedLabel", "TitleFitter", "fitting_axis", "font_plot", "path_row", "show_axes",
           "spin_box", "static_plot", "theme_plot"]  # fmt: skip
