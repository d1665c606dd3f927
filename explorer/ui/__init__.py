"""The Qt user interface. Everything Qt lives in this package; it only renders records that the Qt-free core
(`explorer.*` outside `explorer.ui`) computes."""
