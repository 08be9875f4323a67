"""The end-to-end demo: every step of the stack run through its real command line."""
