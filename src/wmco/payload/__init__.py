"""What goes onto a Windows host: a folder of files described by ``manifest.json``."""
