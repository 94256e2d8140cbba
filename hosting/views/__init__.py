"""The pages, one module per topic (urls.py names each view); shared.py holds what they share."""
