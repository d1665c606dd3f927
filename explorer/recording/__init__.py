"""Recording: video writers (MP4, GIF, PNG frames) and the tour format. Qt-free; the drawing is in explorer.ui."""
