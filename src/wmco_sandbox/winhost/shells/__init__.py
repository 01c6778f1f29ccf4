"""cmd.exe, the native console programs (sc.exe, tar, icacls, ...) and the dispatch between them."""
