"""The core: the night's context, settings, warehouse paths, atomic I/O, dataset contracts, reasons."""
