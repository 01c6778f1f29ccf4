"""The host's networking as Windows' Host Networking Service (HNS) keeps it, and what reads it."""
