"""Candidate recall: offline artefacts (popularity, item-CF, histories) and the online sources."""
